// replay sends pre-made transactions to CometBFT's RPC, many calls in flight, and says what
// came back. authchain's benchmark and flood tests use it for authchain and for CometBFT's
// built-in kvstore alike, so a ratio between them compares the applications, not the load
// generator (a Go client spends far less of a small machine's CPU per call than a Python one).
//
//	replay -in txs.bin -url http://127.0.0.1:26657 [-url ...] -concurrency 32 \
//	       -method broadcast_tx_sync [-seconds 30] [-results out.jsonl]
//
// With -batch N it posts N txs per call, as {"txs": [hex, ...]}, to URL/txs/batch instead: an
// authchain app's tx intake where the apps hold the pending txs (`abci.mempool = "app"`,
// CometBFT's mempool off), or an embedded node's RPC. Code 0 is "accepted", 1 a refusal
// (its reason in "log").
//
// txs.bin holds the transactions in sending order, each prefixed by its length as an unsigned
// varint. Calls go out in that order, at most -concurrency at a time, spread over the URLs
// round robin. The summary (one JSON object) goes to stdout; -results writes one line per tx
// sent: {"i": index, "code": CheckTx code or -1 (refused before the app or failed), "log"}.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type urls []string

func (u *urls) String() string     { return fmt.Sprint(*u) }
func (u *urls) Set(v string) error { *u = append(*u, v); return nil }

type result struct {
	I    int    `json:"i"`
	Code int    `json:"code"`
	Log  string `json:"log,omitempty"`
}

type rpcAnswer struct {
	Result *struct {
		Code int    `json:"code"`
		Log  string `json:"log"`
	} `json:"result"`
	Error *struct {
		Message string `json:"message"`
		Data    string `json:"data"`
	} `json:"error"`
}

func readTxs(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var txs [][]byte
	for {
		n, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return txs, nil
		}
		if err != nil {
			return nil, err
		}
		tx := make([]byte, n)
		if _, err := io.ReadFull(r, tx); err != nil {
			return nil, fmt.Errorf("tx %d: %w", len(txs), err)
		}
		txs = append(txs, tx)
	}
}

func main() {
	var targets urls
	in := flag.String("in", "", "length-prefixed transactions, in sending order")
	flag.Var(&targets, "url", "a CometBFT RPC endpoint (repeat for several)")
	concurrency := flag.Int("concurrency", 32, "calls in flight")
	method := flag.String("method", "broadcast_tx_sync", "broadcast_tx_sync or broadcast_tx_async")
	seconds := flag.Float64("seconds", 0, "stop sending after this long (0: send all)")
	resultsPath := flag.String("results", "", "write one JSON line per tx sent here")
	batch := flag.Int("batch", 0, "post this many txs per call to URL/txs/batch (0: JSON-RPC, one each)")
	flag.Parse()
	if *in == "" || len(targets) == 0 || *concurrency < 1 {
		flag.Usage()
		os.Exit(2)
	}
	txs, err := readTxs(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		os.Exit(1)
	}
	client := &http.Client{
		Timeout: 120 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        *concurrency,
			MaxIdleConnsPerHost: *concurrency,
		},
	}
	results := make([]*result, len(txs))
	per := 1
	if *batch > 0 {
		per = *batch
	}
	calls := (len(txs) + per - 1) / per
	var next atomic.Int64
	var wg sync.WaitGroup
	started := time.Now()
	deadline := started.Add(time.Duration(*seconds * float64(time.Second)))
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c := int(next.Add(1) - 1)
				if c >= calls || (*seconds > 0 && time.Now().After(deadline)) {
					return
				}
				url := targets[c%len(targets)]
				if *batch > 0 {
					first, last := c*per, min((c+1)*per, len(txs))
					copy(results[first:last], post(client, url, first, txs[first:last]))
				} else {
					results[c] = call(client, url, *method, c, txs[c])
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	summary := map[string]any{"seconds": elapsed, "sent": 0, "accepted": 0, "refused": 0, "failed": 0}
	errors := map[string]int{}
	var out *bufio.Writer
	if *resultsPath != "" {
		f, err := os.Create(*resultsPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "replay:", err)
			os.Exit(1)
		}
		defer f.Close()
		out = bufio.NewWriter(f)
		defer out.Flush()
	}
	for _, r := range results {
		if r == nil {
			continue
		}
		summary["sent"] = summary["sent"].(int) + 1
		switch {
		case r.Code == 0:
			summary["accepted"] = summary["accepted"].(int) + 1
		case r.Code > 0:
			summary["refused"] = summary["refused"].(int) + 1
		default:
			summary["failed"] = summary["failed"].(int) + 1
			if len(errors) < 20 {
				errors[r.Log]++
			}
		}
		if out != nil {
			line, _ := json.Marshal(r)
			out.Write(append(line, '\n'))
		}
	}
	summary["errors"] = errors
	line, _ := json.Marshal(summary)
	fmt.Println(string(line))
}

// call sends one tx; Code -1 means CometBFT refused it before the app or the call failed.
func call(client *http.Client, url, method string, i int, tx []byte) *result {
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": i, "method": method,
		"params": map[string]string{"tx": base64.StdEncoding.EncodeToString(tx)},
	})
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return &result{I: i, Code: -1, Log: err.Error()}
	}
	defer resp.Body.Close()
	var answer rpcAnswer
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return &result{I: i, Code: -1, Log: "undecodable answer: " + err.Error()}
	}
	if answer.Error != nil {
		msg := answer.Error.Data
		if msg == "" {
			msg = answer.Error.Message
		}
		return &result{I: i, Code: -1, Log: msg}
	}
	if answer.Result == nil {
		return &result{I: i, Code: -1, Log: "no result"}
	}
	return &result{I: i, Code: answer.Result.Code, Log: answer.Result.Log}
}

type batchAnswer struct {
	Results []struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	} `json:"results"`
}

// post sends txs[first:] as one batch to url/txs/batch; one result per tx, in order.
func post(client *http.Client, url string, first int, txs [][]byte) []*result {
	hexes := make([]string, len(txs))
	for k, tx := range txs {
		hexes[k] = hex.EncodeToString(tx)
	}
	body, _ := json.Marshal(map[string]any{"txs": hexes})
	failed := func(msg string) []*result {
		out := make([]*result, len(txs))
		for k := range txs {
			out[k] = &result{I: first + k, Code: -1, Log: msg}
		}
		return out
	}
	resp, err := client.Post(url+"/txs/batch", "application/json", bytes.NewReader(body))
	if err != nil {
		return failed(err.Error())
	}
	defer resp.Body.Close()
	var answer batchAnswer
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || len(answer.Results) != len(txs) {
		return failed(fmt.Sprintf("HTTP %d: not a batch answer", resp.StatusCode))
	}
	out := make([]*result, len(txs))
	for k, r := range answer.Results {
		if r.Status == "accepted" {
			out[k] = &result{I: first + k, Code: 0}
		} else {
			out[k] = &result{I: first + k, Code: 1, Log: r.Reason}
		}
	}
	return out
}
