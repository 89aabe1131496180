#!/usr/bin/env bash
# Finetune with torchrun (any launcher that sets the torch.distributed environment works the same way):
# one process per GPU on this node; for several nodes run it on each with --nnodes, --node_rank and the
# first node's address, and pass --trainer.num_nodes.
#   bash scripts/torchrun_fit.sh 4 configs/data/pcam.yaml --data.init_args.root /data/pcam
set -euo pipefail

GPUS=${1:?usage: bash scripts/torchrun_fit.sh <gpus> configs/data/<dataset>.yaml [overrides...]}
DATA_CONFIG=${2:?usage: bash scripts/torchrun_fit.sh <gpus> configs/data/<dataset>.yaml [overrides...]}
shift 2

torchrun --standalone --nproc_per_node "$GPUS" -m medtransfer.cli fit \
  --config configs/trainer/ddp.yaml \
  --config "$DATA_CONFIG" \
  --config configs/model/finetune.yaml \
  --trainer.devices "$GPUS" \
  "$@"
