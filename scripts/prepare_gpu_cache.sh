#!/usr/bin/env bash
# Build the cache benchmarks/gpu_check.sh runs from on a machine without network (the lent GPU
# machine: carry this folder, e.g. `carry: [".gpu-cache"]`, under its 64 MiB limit):
#   CACHE/corpus/<source>/docs.jsonl   the offline-en corpus's documents, capped per source (a local corpus:
#                                      read as is, nothing to fetch)
#   CACHE/home/data/tokenizers/*.json  the tokenizers trained on its train split for bert-c5, t5-base,
#                                      bert-micro and t5-micro (content-keyed: found again wherever the corpus lies)
#   CACHE/llmc/*.bin                   that corpus as gpt2-small's byte-level BPE tokens (vocabulary 50,304) in
#                                      the llm.c format (scripts/write_llmc_shards.py): 2M train, 128k validation
# The token shards are not kept (their cache key holds the corpus's paths and mtimes): gpu_check.sh
# rebuilds them there in seconds from the corpus and the cached tokenizers.
# Usage: bash scripts/prepare_gpu_cache.sh [CACHE=.gpu-cache] [MB_PER_SOURCE=3]   (here, with the offline-en sources)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
CACHE="${1:-.gpu-cache}"
MB="${2:-3}"
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
rm -rf "$CACHE/corpus" "$CACHE/home" "$CACHE/llmc"
mkdir -p "$CACHE/corpus"
"$PY" - "$CACHE/corpus" "$MB" <<'PY'
import json, sys
from pathlib import Path
from lmbudget.data.sources import resolve_sources

out, cap = Path(sys.argv[1]), int(float(sys.argv[2]) * 2 ** 20)
for source in resolve_sources("offline-en"):
    if not source.ensure(print):
        print(f"  {source.name}: not available here, left out")
        continue
    size = docs = 0
    (out / source.name).mkdir()
    with open(out / source.name / "docs.jsonl", "w") as f:
        for text in source.documents():
            line = json.dumps({"text": text}) + "\n"
            if size + len(line) > cap:
                break
            f.write(line)
            size, docs = size + len(line), docs + 1
    print(f"  {source.name}: {docs} documents, {size / 2 ** 20:.1f} MiB")
PY
export LMBUDGET_HOME="$CACHE/home"
for model in ${GPU_CACHE_MODELS:-bert-c5 t5-base bert-micro t5-micro}; do
  "$PY" -m lmbudget prepare --corpus "$CACHE/corpus" --model "$model" > "$CACHE/prepare.log" 2>&1 \
    || { tail -3 "$CACHE/prepare.log"; exit 1; }
  echo "$model: $(grep -m1 "tokenizer" "$CACHE/prepare.log" | sed 's/^ *//')"
done
rm -f "$CACHE/prepare.log"
"$PY" scripts/write_llmc_shards.py "$CACHE/corpus" "$CACHE/llmc" --model gpt2-small
find "$LMBUDGET_HOME/data" -mindepth 1 -maxdepth 1 ! -name tokenizers -exec rm -rf {} +
du -sh "$CACHE" "$CACHE"/corpus "$CACHE"/home/data/tokenizers "$CACHE"/llmc
