#!/usr/bin/env bash
# The GPU check (issue 15), one prepared script for a GPU machine, offline (random-init backbones, synthetic data):
#   1. benchmarks/train_throughput.py: ResNet-50 at 224 px, bf16-mixed, channels_last: Finetune + Trainer.fit
#      against a plain PyTorch loop, 5 repeats of both sides, the ratio per repeat judged against the target
#      (>= 0.95) as met, MISSED or too wide to judge (benchmarks/verdicts.py), and peak GPU memory;
#   2. a 2-epoch Finetune of ResNet-50 through `medtransfer fit` on SyntheticMedical at 224 px (bf16-mixed,
#      channels_last, configs/trainer/fast_gpu.yaml): steady-state training images/s with the data pipeline;
#   3. a cached linear probe through `medtransfer fit` on the same data: feature extraction of every split plus
#      the exact solve, images/s end to end;
# and the GPU's name and the peak GPU memory of each step (PyTorch's allocation, and nvidia-smi's sampled use).
# Steps 2 and 3 have no target; each runs GPU_CHECK_REPEATS times (fresh stores each time) and its figures are
# shown as median [min, max] over the repeats, like every benchmark's.
#
#   bash benchmarks/gpu_check.sh               # on a GPU machine, from the repository root (15-25 minutes)
#   bash benchmarks/gpu_check.sh --cpu_smoke   # the same steps shrunk to a tiny CPU run (a few minutes): checks
#                                              # that the script works; its numbers mean nothing
# Environment: GPU_CHECK_WORKERS (DataLoader workers, default: CPU count - 2, at most 12), GPU_CHECK_REPEATS
# (runs of steps 2 and 3, default 3), GPU_CHECK_OUT (where logs, checkpoints and stores go; default: a new
# temporary folder, kept).
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing is downloaded: every backbone is random init
export PYTHONPATH="benchmarks${PYTHONPATH:+:$PYTHONPATH}"  # the TrainingSpeed callback, verdicts.spread
OUT="${GPU_CHECK_OUT:-$(mktemp -d -t medtransfer-gpu-check-XXXX)}"
mkdir -p "$OUT"

if [[ "${1:-}" == "--cpu_smoke" ]]; then
  SMOKE=1 ACCEL=cpu BACKBONE=test_resnet SIZE=32 BATCH=16 TRAIN=64 EVAL=16 WORKERS=0 REPEATS=2
  BENCH=(--steps 3 --warmup 1 --repeats 2 --device cpu)
else
  SMOKE=0 ACCEL=gpu BACKBONE=resnet50 SIZE=224 BATCH=128 TRAIN=8192 EVAL=2048 REPEATS="${GPU_CHECK_REPEATS:-3}"
  WORKERS="${GPU_CHECK_WORKERS:-$(( $(nproc) > 14 ? 12 : ($(nproc) > 2 ? $(nproc) - 2 : 0) ))}"
  BENCH=(--steps 40 --warmup 10 --repeats 5 --device cuda)
  command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: run it on a GPU machine, or with --cpu_smoke"; exit 2; }
fi

calc() { python -c "print(f'{$1:.1f}')"; }
spread() { python -c "import sys; from verdicts import spread; print(spread([float(v) for v in sys.argv[1:]], '.1f'))" "$@"; }
SAMPLER=""
start_memory_sampling() {  # nvidia-smi's used memory every 200 ms, while a step runs
  [[ $SMOKE == 1 ]] && return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/$1.smi" &
  SAMPLER=$!
}
stop_memory_sampling() {
  [[ -z "$SAMPLER" ]] && return 0
  kill "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=""
}
show_peak_memory() {  # the peak over the runs of a step: $OUT/<step>*.smi
  [[ $SMOKE == 1 ]] && return 0
  echo "  nvidia-smi peak memory used: $(cat "$OUT/$1"*.smi | sort -n | tail -1) MiB (device total, all processes)"
}
trap 'stop_memory_sampling || true' EXIT

echo "== gpu_check $( [[ $SMOKE == 1 ]] && echo '(CPU smoke run: tiny sizes, numbers meaningless)' ) =="
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); outputs in $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $SMOKE == 0 ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/GPU: /'
fi
python -c "import torch, pytorch_lightning as pl; print(f'torch {torch.__version__}, lightning {pl.__version__}, CUDA {torch.version.cuda}')"

echo; echo "== 1. train throughput: $BACKBONE at $SIZE px, bf16-mixed, channels_last =="
start_memory_sampling throughput
python benchmarks/train_throughput.py --backbone "$BACKBONE" --image_size "$SIZE" --batch_size "$BATCH" \
  --precision bf16-mixed --channels_last "${BENCH[@]}" 2> "$OUT/throughput.err" \
  || { tail -20 "$OUT/throughput.err"; exit 1; }
stop_memory_sampling
show_peak_memory throughput

DATA=(--data.init_args.native_size "$SIZE" --data.init_args.image_size "$SIZE"
      --data.init_args.num_train "$TRAIN" --data.init_args.num_val "$EVAL" --data.init_args.num_test "$EVAL"
      --data.init_args.batch_size "$BATCH" --data.init_args.num_workers "$WORKERS")
TRAINER=(--trainer.accelerator "$ACCEL" --trainer.enable_progress_bar false
         --trainer.logger.init_args.save_dir "$OUT/runs" --trainer.callbacks+=training_speed.TrainingSpeed)

echo; echo "== 2. medtransfer fit: 2-epoch Finetune, $BACKBONE at $SIZE px, bf16-mixed, channels_last, $REPEATS runs =="
rates=() walls=()
for run in $(seq "$REPEATS"); do
  start_memory_sampling "finetune$run"
  begin=$(date +%s.%N)
  medtransfer fit --config configs/experiments/synthetic_finetune.yaml --config configs/trainer/fast_gpu.yaml \
    --config configs/model/channels_last.yaml "${DATA[@]}" "${TRAINER[@]}" --trainer.max_epochs 2 \
    --model.init_args.backbone "$BACKBONE" --model.init_args.backbone_lr_multiplier 0.1 \
    > "$OUT/finetune$run.log" 2>&1 || { tail -30 "$OUT/finetune$run.log"; exit 1; }
  end=$(date +%s.%N)
  stop_memory_sampling
  grep '^TrainingSpeed' "$OUT/finetune$run.log" | sed "s/^/  run $run: /"
  rates+=("$(grep '^TrainingSpeed' "$OUT/finetune$run.log" | sed -E 's/^TrainingSpeed: ([0-9.]+) training.*/\1/')")
  walls+=("$(calc "$end - $begin")")
done
echo "  training images/s: $(spread "${rates[@]}"); wall time of the whole command (start-up, 2 epochs with" \
     "validation, test): $(spread "${walls[@]}") s"
show_peak_memory finetune

echo; echo "== 3. medtransfer fit: cached linear probe, $BACKBONE at $SIZE px (extraction of all splits + solve), $REPEATS runs =="
images=$(( TRAIN + 2 * EVAL ))
rates=()
for run in $(seq "$REPEATS"); do
  start_memory_sampling "probe$run"
  begin=$(date +%s.%N)
  medtransfer fit --config configs/experiments/synthetic_linear.yaml "${DATA[@]}" "${TRAINER[@]}" \
    --trainer.precision bf16-mixed --model.init_args.backbone "$BACKBONE" \
    --model.init_args.features_dir "$OUT/features$run" > "$OUT/probe$run.log" 2>&1 \
    || { tail -30 "$OUT/probe$run.log"; exit 1; }
  end=$(date +%s.%N)
  stop_memory_sampling
  grep '^TrainingSpeed' "$OUT/probe$run.log" | sed 's/.*; peak/peak/' | grep -i peak | sed "s/^/  run $run: /" || true
  rates+=("$(calc "$images / ($end - $begin)")")
done
echo "  $images images embedded and probed per run: $(spread "${rates[@]}") images/s end to end (start-up included)"
show_peak_memory probe

echo; echo "gpu_check done; logs in $OUT"
