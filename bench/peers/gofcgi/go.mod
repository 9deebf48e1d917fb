module fastgate.bench/gofcgi

go 1.19
