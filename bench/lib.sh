# Shell functions the benchmark scripts share. Source it from a script that has `cd`'d to the
# repository root: `. bench/lib.sh`. The scripts keep the process they started in NODE_PID.

# A free TCP port on loopback, as the kernel hands one out.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts connections on 127.0.0.1:PORT, at most 30 s; exits if not.
wait_for_port() { # port
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1 after 30 s" >&2
  exit 1
}

# Stops the node in NODE_PID with SIGTERM (a clean shutdown) and waits for it.
stop_node() {
  if [ -n "${NODE_PID:-}" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -TERM "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true
  fi
  NODE_PID=""
}

# Records per second of rdkafka_performance's last table row (msgs * 1000 / elapsed ms).
rate_of() { # output-file
  grep -E '^\|' "$1" | tail -1 | awk -F'|' '{ gsub(/ /, ""); if ($2 > 0) printf "%d", $3 * 1000 / $2 }'
}

# The median of numbers on standard input, separated by spaces or newlines (the lower one
# of the middle two when there is an even count).
median() {
  tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
