#!/usr/bin/env bash
# Installs the Debian packages voxswap needs to build and test, if any are missing.
# pkg-config and libasound2-dev: cpal (audio devices, for `voxswap live`) links ALSA.
# espeak-ng, sox, wordnet-base: the synthetic-corpus recipe (recipes/synth), which the tests run
# on a few espeak-ng voices.
# pulseaudio, pulseaudio-utils, libasound2-plugins: an audio server with null sinks, so that the
# tests run `voxswap live` through ALSA and PulseAudio as on a desktop (scripts/audio_server.sh).
# Safe to run again: it installs nothing when everything is there.
set -euo pipefail
packages=(pkg-config libasound2-dev espeak-ng sox wordnet-base pulseaudio pulseaudio-utils libasound2-plugins)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "voxswap setup: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "voxswap setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
