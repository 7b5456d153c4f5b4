//go:build !unix

package tasks

import "time"

// processCPU returns 0: the process's CPU time is unknown here.
func processCPU() time.Duration { return 0 }
