#!/usr/bin/env bash
# Starts a PulseAudio server with two null sinks for the live tests, if none is running:
#   vs_mic  (its monitor, vs_mic.monitor, is the default source: what a test plays into vs_mic
#            is the "microphone")
#   vs_out  (the default sink: what voxswap plays; a test records vs_out.monitor)
# ALSA's default device goes to PulseAudio (libasound2-plugins), so voxswap's cpal (ALSA) path
# is the one a desktop user has. Prints the XDG_RUNTIME_DIR to export.
set -euo pipefail
run=${XDG_RUNTIME_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/audio-server}
mkdir -p "$run"
chmod 700 "$run"
export XDG_RUNTIME_DIR=$run
if ! pactl info >/dev/null 2>&1; then
  # As root PulseAudio warns that it is meant for a user session; it runs all the same.
  pulseaudio --daemonize=yes --exit-idle-time=-1 --disallow-exit --system=false -n \
    --load="module-native-protocol-unix" \
    --load="module-null-sink sink_name=vs_out" \
    --load="module-null-sink sink_name=vs_mic" 2>/dev/null
  for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
fi
pactl set-default-sink vs_out
pactl set-default-source vs_mic.monitor
echo "$run"
