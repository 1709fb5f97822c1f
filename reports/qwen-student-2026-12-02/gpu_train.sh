#!/bin/bash
# On the lent GPU: assemble the carried GGUF pieces, train each prepared run with the product's loop, send the
# adapters back in <16 MiB pieces.  usage: bash .carry/train.sh NAME:GGUF [NAME:GGUF ...]
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 HF_HUB_OFFLINE=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .carry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
for job in "$@"; do
  name=${job%%:*}; gguf=${job#*:}
  rm -rf /tmp/run-$name && cp -r .carry/runs/$name /tmp/run-$name
  echo "== $name on $gguf"; sha256sum $gguf
  /usr/bin/time -v python3 -m slm.training.prepared /tmp/run-$name --base $gguf 2>&1 | grep -vE "it/s\]|s/it\]" | tail -25
  python3 -c "import torch; print('peak GPU MiB', torch.cuda.max_memory_allocated()/2**20)" 2>/dev/null
  (cd /tmp/run-$name && tar cf /tmp/$name.tar adapter loop_result.json && split -b 15M -d -a 1 /tmp/$name.tar $OUT/$name.tar.part)
done
ls -la $OUT
