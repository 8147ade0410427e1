module embers.test/goclient

go 1.19
