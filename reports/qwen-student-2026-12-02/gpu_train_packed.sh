#!/bin/bash
# On the lent GPU: train prepared runs (unpacked once from .carry/runs.tgz into /tmp/runs) with the product's loop
# and send each adapter back in <16 MiB pieces.  usage: bash .carry/train2.sh NAME:GGUF [NAME:GGUF ...]
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 HF_HUB_OFFLINE=1
[ -d /tmp/site/gguf ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .carry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
[ -d /tmp/runs ] || { mkdir -p /tmp/runs && tar xzf .carry/runs.tgz -C /tmp/runs; } || exit 1
for job in "$@"; do
  name=${job%%:*}; gguf=${job#*:}
  echo "== $name on $gguf"; sha256sum $gguf
  /usr/bin/time -f "wall %e s, peak RSS %M KB" python3 -m slm.training.prepared /tmp/runs/$name --base $gguf 2>&1 | tr '\r' '\n' | grep -v "step/s"
  (cd /tmp/runs/$name && tar cf /tmp/$name.tar adapter loop_result.json && split -b 15M -d -a 1 /tmp/$name.tar $OUT/$name.tar.part)
done
ls -la $OUT
