//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// figures collects the measured figures of the suite; TestMain prints them
// as one table once every test has run.
var figures struct {
	mu   sync.Mutex
	rows []figureRow
}

type figureRow struct {
	scenario, figure, value string
}

// figure records one measured figure of a scenario.
func figure(scenario, name, format string, a ...any) {
	figures.mu.Lock()
	defer figures.mu.Unlock()
	figures.rows = append(figures.rows, figureRow{scenario, name, fmt.Sprintf(format, a...)})
}

func printFigures(w io.Writer) {
	figures.mu.Lock()
	defer figures.mu.Unlock()
	if len(figures.rows) == 0 {
		return
	}
	// Fleet scenarios by number, then the faults (a, b, c), each in the
	// order measured.
	slices.SortStableFunc(figures.rows, func(x, y figureRow) int { return scenarioKey(x.scenario) - scenarioKey(y.scenario) })
	wa, wb := len("scenario"), len("figure")
	for _, r := range figures.rows {
		wa, wb = max(wa, len(r.scenario)), max(wb, len(r.figure))
	}
	fmt.Fprintf(w, "\nfleet figures (%s)\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%-*s  %-*s  %s\n", wa, "scenario", wb, "figure", "value")
	fmt.Fprintf(w, "%s  %s  %s\n", strings.Repeat("-", wa), strings.Repeat("-", wb), strings.Repeat("-", 30))
	for _, r := range figures.rows {
		fmt.Fprintf(w, "%-*s  %-*s  %s\n", wa, r.scenario, wb, r.figure, r.value)
	}
}

func scenarioKey(s string) int {
	head, _, _ := strings.Cut(s, " ")
	if n, err := strconv.Atoi(head); err == nil {
		return n
	}
	if len(head) == 1 {
		return 100 + int(head[0])
	}
	return 1000
}

// medianOf is the median of ds (the upper one of an even count).
func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func msList(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%d", d.Milliseconds()))
	}
	return strings.Join(parts, " ")
}
