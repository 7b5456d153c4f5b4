//go:build !unix

package main

func selfUsage() usage { return usage{} }
