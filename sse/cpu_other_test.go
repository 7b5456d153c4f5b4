//go:build !unix

package sse

// processCPU is not measured here.
func processCPU() int64 { return -1 }
