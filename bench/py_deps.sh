# py_deps.sh - sourced by bench/run.sh and bench/peer.sh: installs what
# bench/make_model.py and the transformers baseline need (Debian's
# python3-torch, pip's transformers) when $PYTHON lacks them.  Benches only;
# the server and `make test` never need Python's torch.
if ! "$PYTHON" -c 'import torch, transformers, safetensors' 2>/dev/null; then
    echo "bench: installing python3-torch (Debian) and transformers (pip)" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq python3-torch python3-pip >/dev/null
    "$PYTHON" -m pip install -q --break-system-packages "transformers==4.44.2" "tokenizers>=0.19,<0.20" safetensors
fi
