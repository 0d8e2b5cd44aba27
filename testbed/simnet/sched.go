package simnet

import (
	"sync"
	"time"
)

// event is one scheduled action. fn runs on the scheduler goroutine and must
// not block.
type event struct {
	at  time.Duration // offset from Network start
	seq uint64        // FIFO order among events due at the same instant
	fn  func()
}

// scheduler runs events at their due time on one goroutine, ordered by due
// time and then by the order they were scheduled. One goroutine and one
// timer serve the whole network, so a packet costs a heap push and pop, not
// a goroutine or a runtime timer of its own.
type scheduler struct {
	start time.Time

	mu      sync.Mutex
	heap    []event
	seq     uint64
	next    time.Duration // due time the loop sleeps until; -1 while running
	stopped bool
	maxLag  time.Duration // largest lateness of an event since lag was read

	wake chan struct{} // capacity 1: a new event is due before next
	done chan struct{} // closed by stop
	exit chan struct{} // closed when the loop has returned
}

const forever = time.Duration(1<<63 - 1)

func newScheduler() *scheduler {
	s := &scheduler{
		start: time.Now(),
		next:  -1,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		exit:  make(chan struct{}),
	}
	go s.loop()
	return s
}

// now is the current time as an offset from the scheduler's start
// (monotonic).
func (s *scheduler) now() time.Duration { return time.Since(s.start) }

// at schedules fn to run at offset t. Events scheduled after stop are
// discarded.
func (s *scheduler) at(t time.Duration, fn func()) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.seq++
	s.push(event{at: t, seq: s.seq, fn: fn})
	wake := s.next >= 0 && t < s.next
	s.mu.Unlock()
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// after schedules fn to run d from now.
func (s *scheduler) after(d time.Duration, fn func()) { s.at(s.now()+d, fn) }

// lag returns the largest lateness since the previous call and resets it.
func (s *scheduler) lag() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.maxLag
	s.maxLag = 0
	return l
}

// stop ends the loop and discards pending events; it waits for a running
// batch of events to finish.
func (s *scheduler) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		<-s.exit
		return
	}
	s.stopped = true
	s.heap = nil
	s.mu.Unlock()
	close(s.done)
	<-s.exit
}

func (s *scheduler) loop() {
	defer close(s.exit)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []event
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		now := s.now()
		batch = batch[:0]
		for len(s.heap) > 0 && s.heap[0].at <= now {
			batch = append(batch, s.pop())
		}
		if len(batch) > 0 {
			s.maxLag = max(s.maxLag, now-batch[0].at)
		}
		if len(batch) > 0 {
			s.mu.Unlock()
			for i := range batch {
				batch[i].fn()
				batch[i].fn = nil
			}
			continue
		}
		next := forever
		if len(s.heap) > 0 {
			next = s.heap[0].at
		}
		s.next = next
		s.mu.Unlock()

		wait := next - now
		if next == forever {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
		case <-s.done:
		}
		s.mu.Lock()
		s.next = -1
		s.mu.Unlock()
	}
}

func (s *scheduler) less(i, j int) bool {
	a, b := &s.heap[i], &s.heap[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (s *scheduler) push(e event) {
	s.heap = append(s.heap, e)
	i := len(s.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s.heap[i], s.heap[p] = s.heap[p], s.heap[i]
		i = p
	}
}

func (s *scheduler) pop() event {
	h := s.heap
	e := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = event{}
	s.heap = h[:last]
	i, n := 0, last
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s.heap[i], s.heap[m] = s.heap[m], s.heap[i]
		i = m
	}
	return e
}
