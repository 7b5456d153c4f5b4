module github.com/rtkit/rtkit/examples

go 1.25

require github.com/rtkit/rtkit v0.0.0

replace github.com/rtkit/rtkit => ../
