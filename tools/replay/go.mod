module github.com/authchain/authchain/tools/replay

go 1.22
