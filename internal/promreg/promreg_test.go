package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := Register("x", reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	b := Register("x", reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	if a != b {
		t.Error("a second registration got its own collector, not the registered one")
	}
	if c := prometheus.NewCounter(prometheus.CounterOpts{Name: "y_total", Help: "y"}); Register("x", nil, c) != c {
		t.Error("nil registry")
	}
	defer func() {
		if p := recover(); p == nil {
			t.Error("a conflicting registration did not panic")
		}
	}()
	Register("x", reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other"}))
}
