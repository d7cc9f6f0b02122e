#!/usr/bin/env bash
# Crash recovery: a short finetune run is killed with SIGKILL again and again (after random delays, and right when
# a checkpoint write is under way) and resumed each time until it finishes; its adapters must equal, byte for byte,
# those of the same run left alone. First, without kills, a run stopped after 2 epochs and resumed to 6 must also match
# (a resumed process starts with an empty prompt cache, which once made epoch 6 drift by a few ulps). Usage: kill_resume.sh CXRL_MIMIC OUT_DIR [KILLS]
set -euo pipefail
bin=$1
out=$2
kills=${3:-10}
rm -rf "$out"
mkdir -p "$out"
args=(finetune --steps 2 --batch_size 2 --num_batches 1 --train_batch_size 2 --n_prompts 16 --grid_prompts 0
      --learning_rate 1e-2 --threads 1 --quiet --precision bf16)
"$bin" "${args[@]}" --epochs 6 --out "$out/straight" > /dev/null
"$bin" "${args[@]}" --out "$out/two_then_six" --epochs 2 > /dev/null
"$bin" "${args[@]}" --out "$out/two_then_six" --epochs 6 --resume > /dev/null
cmp "$out/straight/adapters.safetensors" "$out/two_then_six/adapters.safetensors"
echo "kill_resume: 2 epochs, then --resume to 6: adapters identical to the uninterrupted run"
run="$out/killed"
RANDOM=7
n=0
in_write=0
while [ ! -f "$run/adapters.safetensors" ]; do
  resume=()
  [ -f "$run/config.json" ] && resume=(--resume)
  "$bin" "${args[@]}" --epochs 6 --out "$run" "${resume[@]}" > /dev/null 2>&1 &
  pid=$!
  if [ "$n" -ge "$kills" ]; then
    wait "$pid"
    break
  fi
  if [ $((n % 2)) -eq 0 ]; then
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  else
    # Poll for a checkpoint being written and kill right then (up to 20 s, or until the process ends).
    for _ in $(seq 1 20000); do
      compgen -G "$run/checkpoints/*.tmp.*" > /dev/null && break
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.001
    done
  fi
  kill -9 "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  compgen -G "$run/checkpoints/*.tmp.*" > /dev/null && in_write=$((in_write + 1))
  n=$((n + 1))
done
echo "kill_resume: $n kills ($in_write inside a checkpoint write), then the run finished"
cmp "$out/straight/adapters.safetensors" "$run/adapters.safetensors"
echo "kill_resume: adapters identical to the uninterrupted run"
