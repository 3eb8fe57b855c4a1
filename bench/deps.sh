#!/bin/sh
# Installs the Debian packages `make bench` needs, when any is missing:
# the peers (haproxy, stunnel4, nginx-light), the load generator (wrk),
# the capture tool for uplink bytes (tcpdump), the profiler (linux-perf,
# with valgrind as the fallback when perf events are not allowed), strace
# (system calls per request) and the plotter (gnuplot-nox).  Needs root
# (or passwordless sudo) only when something is missing.
set -eu
exec sh "$(dirname "$0")/../mk/deps.sh" haproxy stunnel4 nginx-light wrk \
    tcpdump linux-perf valgrind gnuplot-nox strace openssl python3 procps \
    util-linux
