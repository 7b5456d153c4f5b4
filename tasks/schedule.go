package tasks

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// ErrBadSchedule is wrapped by every error ParseCron returns, so callers can
// tell a malformed spec from other failures with errors.Is.
var ErrBadSchedule = errors.New("tasks: bad schedule")

// A Schedule says when a periodic task fires. Next returns the first tick
// strictly after t (zero time if none). Ticks are absolute instants that
// every node computes identically from the same schedule, whatever its start
// time, which is how the runner fires each tick once across nodes.
type Schedule interface {
	Next(t time.Time) time.Time
}

// Every returns a schedule that ticks at every multiple of d since the Unix
// epoch, so that nodes started at different times still agree on the ticks.
// A tick lands exactly on a multiple: Next of a tick is the tick plus d.
// Every panics if d <= 0, which can only be a programming error.
func Every(d time.Duration) Schedule {
	if d <= 0 {
		panic("tasks: Every needs a positive interval")
	}
	return everySchedule(d)
}

type everySchedule time.Duration

func (e everySchedule) Next(t time.Time) time.Time {
	d := time.Duration(e)
	// Truncate aligns to the zero Time (year 1), not to the Unix epoch; shift
	// by the epoch's phase on that grid. Working on Time rather than UnixNano
	// keeps the whole Time range free of overflow.
	epoch := time.Unix(0, 0)
	phase := epoch.Sub(epoch.Truncate(d))
	return t.Add(-phase).Truncate(d).Add(phase).Add(d)
}

// cronSchedule keeps one bitmask per field: bit v is set when value v matches.
// Day-of-week 7 is folded into 0 while parsing.
type cronSchedule struct {
	sec, min, hour, dom, month, dow uint64
	dayOr                           bool // both day fields restricted: either may match
	loc                             *time.Location
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i; lower case, three letters
}

var cronFields = [6]cronField{
	{name: "second", max: 59},
	{name: "minute", max: 59},
	{name: "hour", max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: strings.Fields("jan feb mar apr may jun jul aug sep oct nov dec")},
	{name: "day-of-week", max: 7, names: strings.Fields("sun mon tue wed thu fri sat sun")},
}

var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseCron parses a cron spec: five fields (minute hour day-of-month month
// day-of-week) or six with a leading seconds field. Fields take lists "1,2",
// ranges "1-5", steps "*/15", "10-50/5" and "10/5" (10 to the maximum), "?"
// for "*", month names jan..dec and weekday names sun..sat (0 and 7 are both
// Sunday, which may end a range: mon-sun). The descriptors @yearly, @annually,
// @monthly, @weekly, @daily, @midnight and @hourly stand for a whole spec. A
// leading "CRON_TZ=Area/City" or "TZ=Area/City" selects the location the
// fields are read in; the default is UTC, never the local zone, so that every
// node computes the same ticks.
//
// As in Vixie cron, when day-of-month and day-of-week are both restricted (the
// field does not start with "*" or "?") a day matches if either matches;
// otherwise both must.
//
// Wall-clock times that a spring-forward gap skips do not fire that day: firing
// them at the first valid instant would pile several ticks onto one instant. In
// a fall-back overlap a schedule whose hour field is "*" follows elapsed time
// and fires in both passes (hourly stays hourly); any other schedule fires each
// wall-clock time once, at its first occurrence. Next searches five years
// ahead and returns the zero time if nothing matches in that span.
func ParseCron(spec string) (Schedule, error) {
	s, err := parseCron(spec)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadSchedule, spec, err)
	}
	return s, nil
}

func parseCron(spec string) (*cronSchedule, error) {
	fields := strings.Fields(spec)
	c := &cronSchedule{loc: time.UTC}
	if len(fields) > 0 && (strings.HasPrefix(fields[0], "TZ=") || strings.HasPrefix(fields[0], "CRON_TZ=")) {
		_, tz, _ := strings.Cut(fields[0], "=")
		loc, err := time.LoadLocation(tz)
		// LoadLocation maps "" to UTC and "Local" to the node's own zone: surely
		// mistakes, and the latter would split the cluster's ticks.
		if err != nil || tz == "" || tz == "Local" {
			return nil, fmt.Errorf("time zone %q is not a known Area/City location", tz)
		}
		c.loc, fields = loc, fields[1:]
	}
	if len(fields) > 0 && strings.HasPrefix(fields[0], "@") {
		d, ok := cronDescriptors[strings.ToLower(fields[0])]
		if !ok || len(fields) > 1 {
			return nil, fmt.Errorf("unknown descriptor %q", strings.Join(fields, " "))
		}
		fields = strings.Fields(d)
	}
	switch len(fields) {
	case 5:
		fields = append([]string{"0"}, fields...)
	case 6:
	default:
		return nil, fmt.Errorf("want 5 or 6 fields, got %d", len(fields))
	}
	masks := [6]*uint64{&c.sec, &c.min, &c.hour, &c.dom, &c.month, &c.dow}
	for i, f := range cronFields {
		m, err := f.parse(fields[i])
		if err != nil {
			return nil, err
		}
		*masks[i] = m
	}
	if c.dow&(1<<7) != 0 {
		c.dow = c.dow&^(1<<7) | 1
	}
	c.dayOr = !strings.ContainsAny(fields[3][:1], "*?") && !strings.ContainsAny(fields[5][:1], "*?")
	return c, nil
}

func (f cronField) parse(expr string) (uint64, error) {
	var mask uint64
	for part := range strings.SplitSeq(expr, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		lo, hi, step := f.min, f.max, 1
		if rng != "*" && rng != "?" {
			a, b, isRange := strings.Cut(rng, "-")
			var errA, errB error
			if lo, errA = f.value(a); isRange {
				hi, errB = f.value(b)
			} else if !hasStep {
				hi = lo // with a step, "10/5" runs on to the maximum
			}
			if err := cmp.Or(errA, errB); err != nil {
				return 0, err
			}
			if isRange && hi == 0 && f.max == 7 {
				hi = 7 // Sunday may end a week: mon-sun, 5-0
			}
			if lo > hi {
				return 0, fmt.Errorf("%s range %s runs backwards", f.name, rng)
			}
		}
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			// Capping the step at the field's span also keeps v+step from overflowing.
			if err != nil || n < 1 || n > f.max-f.min+1 {
				return 0, fmt.Errorf("%s step %q must be a number in 1-%d", f.name, stepStr, f.max-f.min+1)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			mask |= 1 << v
		}
	}
	return mask, nil
}

func (f cronField) value(s string) (int, error) {
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number or name", f.name, s)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%s %d out of range %d-%d", f.name, n, f.min, f.max)
	}
	return n, nil
}

func (c *cronSchedule) Next(t time.Time) time.Time {
	start := t.Truncate(time.Second).Add(time.Second)
	r := c.nextFrom(start)
	if c.hour != 1<<24-1 || r.IsZero() {
		return r
	}
	// The wall-clock scan cannot see the second pass of a fall-back overlap
	// that begins before r; hour-wildcard schedules fire there too.
	s := start.In(c.loc)
	_, sOff := s.Zone()
	if _, x := s.ZoneBounds(); !x.IsZero() && !x.After(r) {
		if _, xOff := x.Zone(); xOff < sOff {
			if r2 := c.nextFrom(x); !r2.IsZero() && r2.Before(r) {
				return r2
			}
		}
	}
	return r
}

// nextFrom returns the first tick at or after start, a whole second, scanning
// wall-clock times in c.loc (carried as UTC Times, which have no DST).
func (c *cronSchedule) nextFrom(start time.Time) time.Time {
	from := wallClock(start.In(c.loc))
	end := from.AddDate(5, 0, 0)
	for {
		w, ok := c.match(from, end)
		if !ok {
			return time.Time{}
		}
		inst := c.instants(w)
		if len(inst) == 2 && c.hour != 1<<24-1 {
			if !inst[0].Before(start) {
				return inst[0]
			}
			// The first pass has fired this and the rest of the repeated
			// wall-clock range already: resume after the overlap.
			x, _ := inst[1].ZoneBounds()
			from = w.Add(time.Second)
			if after := wallClock(x.In(c.loc)).Add(inst[1].Sub(inst[0])); after.After(from) {
				from = after
			}
			continue
		}
		for _, i := range inst {
			if !i.Before(start) {
				return i
			}
		}
		from = w.Add(time.Second)
	}
}

// match returns the first wall-clock time at or after from and before end
// that matches every field, skipping whole months, days, hours and minutes.
func (c *cronSchedule) match(from, end time.Time) (time.Time, bool) {
	t := from
	for t.Before(end) {
		y, mo, d := t.Date()
		h, mi, s := t.Clock()
		switch {
		// Out-of-range values roll over through time.Date's normalisation.
		case c.month&(1<<mo) == 0:
			t = time.Date(y, time.Month(nextBit(c.month, int(mo), 13)), 1, 0, 0, 0, 0, time.UTC)
		case !c.dayMatches(d, t.Weekday()):
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
		case c.hour&(1<<h) == 0:
			t = time.Date(y, mo, d, nextBit(c.hour, h, 24), 0, 0, 0, time.UTC)
		case c.min&(1<<mi) == 0:
			t = time.Date(y, mo, d, h, nextBit(c.min, mi, 60), 0, 0, time.UTC)
		case c.sec&(1<<s) == 0:
			t = time.Date(y, mo, d, h, mi, nextBit(c.sec, s, 60), 0, time.UTC)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

func (c *cronSchedule) dayMatches(d int, wd time.Weekday) bool {
	dom, dow := c.dom&(1<<d) != 0, c.dow&(1<<wd) != 0
	if c.dayOr {
		return dom || dow
	}
	return dom && dow
}

// instants returns the instants, earliest first, whose wall clock in c.loc
// reads w: none in a spring-forward gap, two in a fall-back overlap. It does
// not rely on time.Date, whose choice in an overlap is unspecified.
func (c *cronSchedule) instants(w time.Time) []time.Time {
	u := w.Unix()
	var out []time.Time
	// Any instant reading w lies within [u-14h, u+12h], as UTC offsets span
	// -12h..+14h; the offsets in force at both edges are the candidates. An
	// overlap comes from a falling offset, so the earlier instant comes first.
	for _, probe := range [2]int64{u - 14*3600, u + 12*3600} {
		_, off := time.Unix(probe, 0).In(c.loc).Zone()
		i := time.Unix(u-int64(off), 0).In(c.loc)
		if wallClock(i).Equal(w) && (len(out) == 0 || !i.Equal(out[0])) {
			out = append(out, i)
		}
	}
	return out
}

// wallClock returns t's wall-clock reading to the second, as a UTC Time.
func wallClock(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// nextBit returns the lowest set bit of mask above v, or none if there is none.
func nextBit(mask uint64, v, none int) int {
	if m := mask >> (v + 1) << (v + 1); m != 0 {
		return bits.TrailingZeros64(m)
	}
	return none
}
