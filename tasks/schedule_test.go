package tasks

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustParseCron(t testing.TB, spec string) *cronSchedule {
	t.Helper()
	s, err := ParseCron(spec)
	require.NoError(t, err, spec)
	return s.(*cronSchedule)
}

func mask(vs ...int) uint64 {
	var m uint64
	for _, v := range vs {
		m |= 1 << v
	}
	return m
}

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func TestParseCronValid(t *testing.T) {
	t.Parallel()
	all := func(lo, hi int) uint64 { return mask(hi+1) - mask(lo) }
	tests := []struct {
		spec                            string
		sec, min, hour, dom, month, dow uint64
		dayOr                           bool
	}{
		{"* * * * *", mask(0), all(0, 59), all(0, 23), all(1, 31), all(1, 12), all(0, 6), false},
		{"*/15 0-5/2 ? * *", mask(0), mask(0, 15, 30, 45), mask(0, 2, 4), all(1, 31), all(1, 12), all(0, 6), false},
		{"10/20 1,2,23 1 JAN-mar/2 mon-sun", mask(0), mask(10, 30, 50), mask(1, 2, 23), mask(1), mask(1, 3), all(0, 6), true},
		{"*/30 10-50/20 * * * 7", mask(0, 30), mask(10, 30, 50), all(0, 23), all(1, 31), all(1, 12), mask(0), false},
		{"0 0 13 * fri", mask(0), mask(0), mask(0), mask(13), all(1, 12), mask(5), true},
		{"0 0 */2 * fri", mask(0), mask(0), mask(0), all(1, 31) &^ mask(2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), all(1, 12), mask(5), false},
		{"  @weekly  ", mask(0), mask(0), mask(0), all(1, 31), all(1, 12), mask(0), false},
		{"@ANNUALLY", mask(0), mask(0), mask(0), mask(1), mask(1), all(0, 6), false},
		{"1 * * * dec sat-sun,5-0", mask(1), all(0, 59), all(0, 23), all(1, 31), mask(12), mask(0, 5, 6), false},
	}
	for _, tt := range tests {
		c := mustParseCron(t, tt.spec)
		want := cronSchedule{tt.sec, tt.min, tt.hour, tt.dom, tt.month, tt.dow, tt.dayOr, time.UTC}
		assert.Equal(t, want, *c, tt.spec)
	}

	c := mustParseCron(t, "CRON_TZ=America/New_York @daily")
	assert.Equal(t, "America/New_York", c.loc.String())
	c = mustParseCron(t, "TZ=Asia/Tokyo 0 9 * * *")
	assert.Equal(t, "Asia/Tokyo", c.loc.String())
}

func TestParseCronInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ spec, want string }{
		{"", "got 0"},
		{"* * * *", "want 5 or 6 fields, got 4"},
		{"* * * * * * *", "got 7"},
		{"61 * * * *", "minute 61 out of range 0-59"},
		{"60 * * * * *", "second 60 out of range"},
		{"* 24 * * *", "hour 24 out of range 0-23"},
		{"* * 0 * *", "day-of-month 0 out of range 1-31"},
		{"* * 32 * *", "day-of-month 32"},
		{"* * * 13 *", "month 13 out of range 1-12"},
		{"* * * foo *", `month "foo" is not a number or name`},
		{"* * * * 8", "day-of-week 8 out of range 0-7"},
		{"* * * * mon-funday", `day-of-week "funday"`},
		{"5-1 * * * *", "minute range 5-1 runs backwards"},
		{"*/0 * * * *", `minute step "0"`},
		{"*/x * * * *", `minute step "x"`},
		{"* */25 * * *", `hour step "25" must be a number in 1-24`},
		{"1,,2 * * * *", `minute ""`},
		{"-1 * * * *", `minute ""`},
		{"1-2-3 * * * *", `minute "2-3"`},
		{"* * * jan-feb-mar *", `month "feb-mar"`},
		{"@fortnightly", `unknown descriptor "@fortnightly"`},
		{"@daily 0", "descriptor"},
		{"TZ=Mars/Olympus_Mons * * * * *", "time zone"},
		{"CRON_TZ= * * * * *", "time zone"},
		{"TZ=Local * * * * *", "time zone"},
		{"TZ=../etc/passwd * * * * *", "time zone"},
		{"TZ=UTC", "got 0"},
	}
	for _, tt := range tests {
		s, err := ParseCron(tt.spec)
		require.Error(t, err, tt.spec)
		assert.Nil(t, s, tt.spec)
		assert.True(t, errors.Is(err, ErrBadSchedule), tt.spec)
		assert.Contains(t, err.Error(), tt.want, tt.spec)
	}
	_, err := ParseCron("61 * * * *")
	assert.EqualError(t, err, `tasks: bad schedule "61 * * * *": minute 61 out of range 0-59`)
}

func TestCronNext(t *testing.T) {
	t.Parallel()
	ny, tokyo := mustLoc(t, "America/New_York"), mustLoc(t, "Asia/Tokyo")
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return tm
	}
	tests := []struct {
		name, spec, from, want string // want "" means no tick
	}{
		{"step", "*/15 * * * *", "2024-06-07T10:07:30Z", "2024-06-07T10:15:00Z"},
		{"on a tick", "*/15 * * * *", "2024-06-07T10:15:00Z", "2024-06-07T10:30:00Z"},
		{"sub-second", "* * * * *", "2024-06-07T10:00:00.5Z", "2024-06-07T10:01:00Z"},
		{"range step", "10-50/20 * * * *", "2024-06-07T10:51:00Z", "2024-06-07T11:10:00Z"},
		{"seconds", "*/10 * * * * *", "2024-06-07T10:00:10Z", "2024-06-07T10:00:20Z"},
		{"seconds sub-second", "*/10 * * * * *", "2024-06-07T10:00:09.999Z", "2024-06-07T10:00:10Z"},
		{"weekday names", "0 9 * * mon-fri", "2024-06-07T10:00:00Z", "2024-06-10T09:00:00Z"},
		{"month names", "0 0 1 jan,jul *", "2024-02-01T00:00:00Z", "2024-07-01T00:00:00Z"},
		{"sunday 7", "0 0 * * 7", "2024-09-04T00:00:00Z", "2024-09-08T00:00:00Z"},
		{"weekly", "@weekly", "2024-09-04T12:00:00Z", "2024-09-08T00:00:00Z"},
		{"hourly", "@hourly", "2024-09-04T12:00:00Z", "2024-09-04T13:00:00Z"},
		{"yearly", "@yearly", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"dom or dow: dow", "0 0 1 * mon", "2024-09-02T01:00:00Z", "2024-09-09T00:00:00Z"},
		{"dom or dow: dom", "0 0 1 * mon", "2024-09-30T01:00:00Z", "2024-10-01T00:00:00Z"},
		{"dom and dow with *", "0 0 */2 * mon", "2024-09-01T00:00:00Z", "2024-09-09T00:00:00Z"},
		{"month rollover", "0 0 31 * *", "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"},
		{"year rollover", "30 23 31 12 *", "2024-12-31T23:30:00Z", "2025-12-31T23:30:00Z"},
		{"leap day", "0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"leap day beyond 5 years", "0 0 29 2 *", "2096-03-01T00:00:00Z", ""},
		{"impossible", "0 0 30 2 *", "2024-01-01T00:00:00Z", ""},
		{"impossible april", "0 0 31 4,6,9,11 *", "2024-01-01T00:00:00Z", ""},
		{"cron tz", "CRON_TZ=Asia/Tokyo 0 9 * * *", "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z"},
		{"tz", "TZ=Asia/Tokyo 0 9 * * *", "2024-05-31T23:59:59Z", "2024-06-01T00:00:00Z"},
		// America/New_York springs forward at 2024-03-10 02:00 EST (07:00Z)
		// and falls back at 2024-11-03 02:00 EDT (06:00Z).
		{"gap skipped", "TZ=America/New_York 30 2 * * *", "2024-03-09T12:00:00-05:00", "2024-03-11T02:30:00-04:00"},
		{"gap hourly", "TZ=America/New_York 0 * * * *", "2024-03-10T01:30:00-05:00", "2024-03-10T03:00:00-04:00"},
		{"gap steps", "TZ=America/New_York */20 * * * *", "2024-03-10T01:45:00-05:00", "2024-03-10T03:00:00-04:00"},
		{"after gap", "TZ=America/New_York 0 3 * * *", "2024-03-10T01:45:00-05:00", "2024-03-10T03:00:00-04:00"},
		{"overlap first pass", "TZ=America/New_York 30 1 * * *", "2024-11-03T00:00:00-04:00", "2024-11-03T01:30:00-04:00"},
		{"overlap once", "TZ=America/New_York 30 1 * * *", "2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"},
		{"overlap once from second pass", "TZ=America/New_York */15 1 * * *", "2024-11-03T01:10:00-05:00", "2024-11-04T01:00:00-05:00"},
		{"overlap hourly first", "TZ=America/New_York 0 * * * *", "2024-11-03T00:30:00-04:00", "2024-11-03T01:00:00-04:00"},
		{"overlap hourly second", "TZ=America/New_York 0 * * * *", "2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00"},
		{"overlap hourly after", "TZ=America/New_York 0 * * * *", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"},
		{"overlap wildcard hour", "TZ=America/New_York 20 * * * *", "2024-11-03T01:10:00-05:00", "2024-11-03T01:20:00-05:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseCron(tt.spec)
			require.NoError(t, err)
			got := s.Next(utc(tt.from))
			if tt.want == "" {
				assert.True(t, got.IsZero(), "got %v", got)
				return
			}
			want := utc(tt.want)
			assert.True(t, want.Equal(got), "want %v, got %v", want, got)
			assert.Zero(t, got.Nanosecond())
		})
	}

	// Results are read in the schedule's location, whatever t's location.
	got := mustParseCron(t, "TZ=America/New_York 0 9 * * *").Next(time.Date(2024, 6, 1, 20, 0, 0, 0, tokyo))
	assert.Equal(t, time.Date(2024, 6, 1, 9, 0, 0, 0, ny).String(), got.String())
}

// TestCronNextBruteForce checks Next against the definition of the ticks,
// minute by minute in absolute time, across DST transitions: an instant
// ticks if its wall clock matches and, unless the hour field is "*", no
// earlier instant showed the same wall clock.
func TestCronNextBruteForce(t *testing.T) {
	t.Parallel()
	specs := []string{
		"* * * * *", "*/15 * * * *", "0 * * * *", "30 1 * * *", "*/20 1,2 * * *",
		"0,30 2 * * *", "45 0-3 * * sun", "0 0 3,10 * sun",
	}
	zones := []struct {
		name     string
		from, to string
	}{
		{"America/New_York", "2024-03-09T20:00:00Z", "2024-03-10T14:00:00Z"},
		{"America/New_York", "2024-11-02T20:00:00Z", "2024-11-03T14:00:00Z"},
		{"Australia/Lord_Howe", "2024-04-06T10:00:00Z", "2024-04-07T00:00:00Z"}, // 30-minute shift
		{"Australia/Lord_Howe", "2024-10-05T10:00:00Z", "2024-10-06T00:00:00Z"},
	}
	for _, spec := range specs {
		for _, z := range zones {
			c := mustParseCron(t, "TZ="+z.name+" "+spec)
			from, _ := time.Parse(time.RFC3339, z.from)
			to, _ := time.Parse(time.RFC3339, z.to)
			var want []time.Time
			for i := from.Add(time.Minute); !i.After(to); i = i.Add(time.Minute) {
				w := wallClock(i.In(c.loc))
				ok := c.min&mask(w.Minute()) != 0 && c.hour&mask(w.Hour()) != 0 &&
					c.month&mask(int(w.Month())) != 0 && c.dayMatches(w.Day(), w.Weekday())
				for j := i.Add(-3 * time.Hour); ok && c.hour != 1<<24-1 && j.Before(i); j = j.Add(time.Minute) {
					ok = !wallClock(j.In(c.loc)).Equal(w)
				}
				if ok {
					want = append(want, i)
				}
			}
			var got []time.Time
			for n := c.Next(from); !n.IsZero() && !n.After(to); n = c.Next(n) {
				got = append(got, n.UTC())
			}
			require.Equal(t, want, got, "%s in %s", spec, z.name)
		}
	}
}

func TestEvery(t *testing.T) {
	t.Parallel()
	at := func(sec, nsec int64) time.Time { return time.Unix(sec, nsec) }
	tests := []struct {
		d        time.Duration
		from, to time.Time
	}{
		{time.Hour, at(3600*10+1800, 0), at(3600*11, 0)},
		{time.Hour, at(3600*11, 0), at(3600*12, 0)},
		{time.Hour, at(3600*11-1, 999999999), at(3600*11, 0)},
		{7 * time.Hour, at(1_700_000_000, 0), at(1_700_017_200, 0)},
		{1500 * time.Millisecond, at(0, 100), at(1, 500_000_000)},
		{time.Hour, at(-5400, 0), at(-3600, 0)},
		{24 * time.Hour, time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC), time.Date(2024, 3, 11, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got := Every(tt.d).Next(tt.from)
		assert.True(t, tt.to.Equal(got), "Every(%v).Next(%v) = %v, want %v", tt.d, tt.from, got, tt.to)
	}

	// Nodes that started at different times and live in different zones
	// agree, and ticks sit on multiples of d since the epoch.
	ny, tokyo := mustLoc(t, "America/New_York"), mustLoc(t, "Asia/Tokyo")
	s := Every(7 * time.Minute)
	a := s.Next(time.Date(2024, 11, 3, 1, 30, 0, 0, ny))
	b := s.Next(a.Add(-time.Nanosecond).In(tokyo))
	assert.True(t, a.Equal(b))
	assert.Zero(t, a.Unix()%(7*60))
	for range 100 {
		n := s.Next(a)
		require.Equal(t, 7*time.Minute, n.Sub(a))
		a = n
	}

	assert.PanicsWithValue(t, "tasks: Every needs a positive interval", func() { Every(0) })
	assert.PanicsWithValue(t, "tasks: Every needs a positive interval", func() { Every(-time.Second) })
}

func FuzzParseCron(f *testing.F) {
	for _, s := range []string{
		"* * * * *", "*/15 0-5/2 ? * *", "10/20 1,2,23 1 JAN-mar/2 mon-sun", "0 0 29 2 *",
		"0 0 30 2 *", "@weekly", "TZ=America/New_York 30 1 * * *", "CRON_TZ=Australia/Lord_Howe 0 * * * *",
		"*/10 * * * * *", "0 0 13 * fri", "61 * * * *", "5-1 * * * *", "@every 1h",
	} {
		f.Add(s)
	}
	from := time.Date(2024, 11, 3, 5, 30, 15, 500, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseCron(spec)
		if err != nil {
			require.ErrorIs(t, err, ErrBadSchedule)
			return
		}
		n := s.Next(from)
		if n.IsZero() {
			return
		}
		require.True(t, n.After(from), "%q: Next(%v) = %v", spec, from, n)
		n2 := s.Next(n)
		require.True(t, n2.IsZero() || n2.After(n), "%q: Next(%v) = %v", spec, n, n2)
	})
}
