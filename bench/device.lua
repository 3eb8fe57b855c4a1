-- wrk script: what one device sends, the shape of a Drogue Cloud HTTP
-- endpoint call (a small JSON telemetry POST with Basic credentials).
-- BENCH_CLOSE=1 adds "Connection: close", so every request uses a new
-- device connection (RFC 9112 section 9.6: the gateway closes after the
-- response and wrk connects again).  done() prints one "BENCH {json}"
-- line that bench/run.py reads.
wrk.method = "POST"
wrk.body = '{"temp":21.5,"hum":40}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic ZGV2aWNlMUBiZW5jaDpzZWNyZXQ="
if os.getenv("BENCH_CLOSE") == "1" then
	wrk.headers["Connection"] = "close"
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,' ..
		'"err_connect":%d,"err_read":%d,"err_write":%d,' ..
		'"err_status":%d,"err_timeout":%d,' ..
		'"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
		'"mean_us":%.1f}\n',
		summary.requests, summary.duration, summary.bytes,
		e.connect, e.read, e.write, e.status, e.timeout,
		latency:percentile(50), latency:percentile(90),
		latency:percentile(99), latency.max, latency.mean))
end
