package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/basefs/basefs/control"
	"github.com/basefs/basefs/log"
	"github.com/basefs/basefs/ops"
	"github.com/basefs/basefs/replica"
	"github.com/basefs/basefs/syncproto"
	"github.com/basefs/basefs/version"
)

// newRoot builds the command tree from the command table: one cobra command
// per entry, its flags declared by the entry's flagSpecs. Commands read
// their flags and arguments through a parsed value, so the command
// functions do not depend on the CLI library.
func newRoot(env *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:           "basefs",
		Short:         "a peer-to-peer, eventually consistent configuration filesystem",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		// The table's own completion command replaces cobra's.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q (see 'basefs help')", args[0])
			}
			return usagef("no command given (see 'basefs help')")
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return env.applyGlobal(cmd.Flags())
		},
	}
	root.Version = buildInfo().String()
	root.SetVersionTemplate("{{.Version}}\n")
	gf := root.PersistentFlags()
	gf.String("home", "", "node home (default $BASEFS_HOME, then ~/.basefs)")
	gf.String("log-level", "", "debug, info, warn or error (default warn; info for run)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if c == root {
			return usagef("%v", err)
		}
		return usagef("%s: %v", c.Name(), err)
	})
	root.SetHelpFunc(func(c *cobra.Command, _ []string) {
		topic := ""
		if c != root {
			topic = c.Name()
		}
		_ = printHelp(c.OutOrStdout(), topic)
	})
	root.SetHelpCommand(&cobra.Command{
		Use:  "help [COMMAND]",
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			topic := ""
			if len(args) == 1 {
				topic = args[0]
			}
			return printHelp(c.OutOrStdout(), topic)
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, c := range commands() {
				names = append(names, c.name)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	})
	for _, c := range commands() {
		root.AddCommand(env.cobraCommand(c))
	}
	root.SetIn(env.stdin)
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	return root
}

// cobraCommand turns one table entry into a cobra command.
func (env *cliEnv) cobraCommand(c *command) *cobra.Command {
	cc := &cobra.Command{
		Use:                   c.name + " " + c.args,
		Short:                 c.summary,
		DisableFlagsInUseLine: true,
		Args:                  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f, _ := cmd.Flags().GetString("config"); f != "" {
				if err := applyConfig(cmd.Flags(), c.flags, f); err != nil {
					return err
				}
			}
			return c.run(env, parsedFrom(cmd.Flags(), c.flags, args))
		},
		ValidArgsFunction: env.completeTarget,
		Hidden:            c.hidden,
	}
	if c.complete != nil {
		cc.ValidArgsFunction = c.complete
	}
	fs := cc.Flags()
	for _, f := range c.flags {
		switch {
		case f.value && f.repeat:
			fs.StringArrayP(f.name, f.short, nil, f.help)
		case f.value:
			fs.StringP(f.name, f.short, "", f.help)
		case len(f.name) == 1 && f.short == "":
			fs.BoolP(f.name, f.name, false, f.help)
		default:
			fs.BoolP(f.name, f.short, false, f.help)
		}
		if f.valueFor == "PATH" || f.valueFor == "KEYFILE" || f.valueFor == "PUBFILE" || f.valueFor == "FILE" {
			_ = cc.MarkFlagFilename(f.name)
		}
		if f.valueFor == "DIR" {
			_ = cc.MarkFlagDirname(f.name)
		}
	}
	return cc
}

// parsedFrom collects the flags a command declared, as given on its line.
func parsedFrom(fs *pflag.FlagSet, specs []flagSpec, args []string) *parsed {
	p := &parsed{flags: map[string][]string{}, args: args}
	for _, f := range specs {
		if !fs.Changed(f.name) {
			continue
		}
		switch {
		case f.value && f.repeat:
			v, _ := fs.GetStringArray(f.name)
			p.flags[f.name] = v
		case f.value:
			v, _ := fs.GetString(f.name)
			p.flags[f.name] = []string{v}
		default:
			if v, _ := fs.GetBool(f.name); v {
				p.flags[f.name] = []string{""}
			}
		}
	}
	return p
}

// applyConfig sets the flags that a YAML config file names and the
// command line did not give (the command line wins). Keys are the flags'
// long names; a repeatable flag takes a list or one value; a switch takes
// true or false:
//
//	bind: 10.0.0.1:7946
//	join: [10.0.0.2:7946, 10.0.0.3:7946]
//	handler:
//	  - /etc/dnsmasq.d/**=/usr/local/lib/basefs/dns.sh
func applyConfig(fs *pflag.FlagSet, specs []flagSpec, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config %s: %v", file, errors.Unwrap(err))
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return usagef("config %s: not a YAML mapping of option names to values: %v", file, oneLine(err.Error()))
	}
	known := map[string]flagSpec{}
	for _, f := range specs {
		known[f.name] = f
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := known[k]
		if !ok || k == "config" {
			return usagef("config %s: unknown option %q", file, k)
		}
		if fs.Changed(k) {
			continue
		}
		values := []any{m[k]}
		if list, ok := m[k].([]any); ok && f.repeat {
			values = list
		}
		for _, v := range values {
			if _, isList := v.([]any); isList || v == nil {
				return usagef("config %s: option %q needs a single value", file, k)
			}
			if err := fs.Set(k, fmt.Sprint(v)); err != nil {
				return usagef("config %s: option %q: %v", file, k, err)
			}
		}
	}
	return nil
}

// applyGlobal resolves --home and --log-level.
func (env *cliEnv) applyGlobal(fs *pflag.FlagSet) error {
	h, _ := fs.GetString("home")
	var err error
	if env.home, err = resolveHome(h, env.getenv); err != nil {
		return err
	}
	env.logLevel = slog.LevelWarn
	if lv, _ := fs.GetString("log-level"); lv != "" {
		if err := env.logLevel.UnmarshalText([]byte(lv)); err != nil {
			return usagef("--log-level %q: use debug, info, warn or error", lv)
		}
		env.logLevelSet = true
	}
	return nil
}

// completeTarget completes NAME and NAME:/path arguments: the filesystems
// of this home, then the paths inside one (through the running node when
// there is one, else the local store).
func (env *cliEnv) completeTarget(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if env.applyGlobal(cmd.Flags()) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	name, p, hasPath := strings.Cut(toComplete, ":")
	if !hasPath {
		var out []string
		for _, n := range env.filesystems() {
			if strings.HasPrefix(n, name) {
				out = append(out, n+":/")
			}
		}
		return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
	}
	if log.ValidateFSName(name) != nil || !replica.Exists(env.fsDir(name)) {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if p == "" {
		p = "/"
	}
	dir, prefix := p[:strings.LastIndexByte(p, '/')+1], p[strings.LastIndexByte(p, '/')+1:]
	var out []string
	_ = env.withBackendQuiet(name, func(b backend) error {
		items, err := b.List(path.Clean(dir))
		if err != nil {
			return err
		}
		for _, it := range items {
			base := log.Base(it.Path)
			if !strings.HasPrefix(base, prefix) {
				continue
			}
			s := name + ":" + dir + base
			if it.Kind.String() == "dir" {
				s += "/"
			}
			out = append(out, s)
		}
		return nil
	})
	sort.Strings(out)
	return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
}

// withBackendQuiet is withBackend for completion: a store that is busy is
// skipped at once instead of waited for.
func (env *cliEnv) withBackendQuiet(name string, fn func(b backend) error) error {
	dir := env.fsDir(name)
	if c, err := control.Dial(dir); err == nil {
		defer c.Close()
		return fn(c)
	}
	r, err := replica.Open(dir, replica.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(localBackend{ops.Local{R: r}})
}

// filesystems lists the filesystem names of this home.
func (env *cliEnv) filesystems() []string {
	des, err := os.ReadDir(env.fsDir(""))
	if err != nil {
		return nil
	}
	var names []string
	for _, d := range des {
		if d.IsDir() && log.ValidateFSName(d.Name()) == nil {
			names = append(names, d.Name())
		}
	}
	return names
}

func buildInfo() version.Info { return version.Get(syncproto.Version, log.FormatVersion) }

// cmdVersion prints the version, commit, Go version and protocol versions.
func cmdVersion(env *cliEnv, p *parsed) error {
	if err := nArgs(p, "version", 0, 0); err != nil {
		return err
	}
	if p.has("json") {
		return writeJSON(env.stdout, buildInfo())
	}
	fmt.Fprintln(env.stdout, buildInfo())
	return nil
}

// cmdCompletion prints a shell completion script.
func cmdCompletion(env *cliEnv, p *parsed) error {
	if len(p.args) != 1 {
		return usagef("completion: give one shell: bash, zsh or fish")
	}
	root := newRoot(env)
	switch p.args[0] {
	case "bash":
		return root.GenBashCompletionV2(env.stdout, true)
	case "zsh":
		return root.GenZshCompletion(env.stdout)
	case "fish":
		return root.GenFishCompletion(env.stdout, true)
	}
	return usagef("completion: unknown shell %q (use bash, zsh or fish)", p.args[0])
}

func completeShells(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"bash", "zsh", "fish"}, cobra.ShellCompDirectiveNoFileComp
}
