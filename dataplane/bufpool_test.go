package dataplane

import (
	"testing"
	"time"
)

// TestBufPoolFollowsPeak: the free list keeps what the load in flight
// needs, whatever its size, and frees what a whole trim window left
// untouched.
func TestBufPoolFollowsPeak(t *testing.T) {
	win := int64(bufTrimEvery)
	type step struct {
		hold  int   // buffers taken at once, then all given back
		trim  int64 // then a trim at this time (0: none)
		idle  int   // free buffers after the step
		fresh int   // buffers the step had to allocate
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a burst stays one window, then goes", []step{
			{hold: 300, idle: 300, fresh: 300},
			{trim: win, idle: 300},       // the burst was this window
			{hold: 20, idle: 300},        // the next window needs 20
			{trim: 2 * win, idle: 20},    // the rest goes
			{trim: 3 * win, idle: 0},     // an idle window frees all
			{hold: 5, idle: 5, fresh: 5}, // and a new load grows it again
		}},
		{"steady load above the old bound allocates nothing", []step{
			{hold: 200, idle: 200, fresh: 200},
			{hold: 200, idle: 200},
			{trim: win, idle: 200},
			{hold: 200, idle: 200},
			{trim: 2 * win, idle: 200},
			{hold: 200, idle: 200},
		}},
		{"a trim within the window does nothing", []step{
			{hold: 50, idle: 50, fresh: 50},
			{trim: win, idle: 50},
			{trim: win + int64(time.Second), idle: 50},
			{trim: 2*win - 1, idle: 50},
			{trim: 2 * win, idle: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p bufPool
			known := map[*buffer]bool{}
			for i, s := range tt.steps {
				held := make([]*buffer, 0, s.hold)
				fresh := 0
				for range s.hold {
					b := p.get()
					if !known[b] {
						known[b] = true
						fresh++
					}
					if len(b.b) != bufSize {
						t.Fatalf("step %d: buffer of %d bytes", i, len(b.b))
					}
					held = append(held, b)
				}
				for _, b := range held {
					p.put(b)
				}
				if s.trim != 0 {
					p.trim(s.trim)
				}
				if got := p.idle(); got != s.idle {
					t.Errorf("step %d: %d buffers free, want %d", i, got, s.idle)
				}
				if fresh != s.fresh {
					t.Errorf("step %d: %d buffers allocated, want %d", i, fresh, s.fresh)
				}
			}
		})
	}
}

// TestBufPoolOversized: a buffer grown past bufSize is not kept.
func TestBufPoolOversized(t *testing.T) {
	var p bufPool
	b := p.get()
	b.b = make([]byte, 2*bufSize)
	p.put(b)
	p.put(nil)
	if got := p.idle(); got != 0 {
		t.Fatalf("%d buffers free after an oversized one, want 0", got)
	}
}

// idle is how many buffers wait free.
func (p *bufPool) idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
