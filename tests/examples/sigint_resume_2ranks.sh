#!/usr/bin/env bash
# A 2-rank run (finetune --nproc 2) stopped with Ctrl-C after its first epoch and resumed must end with the adapters,
# byte for byte, of the same 2-rank run left alone. Usage: sigint_resume_2ranks.sh CXRL_MIMIC OUT_DIR
set -euo pipefail
bin=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
args=(finetune --nproc 2 --epochs 4 --steps 2 --batch_size 2 --num_batches 1 --train_batch_size 1 --n_prompts 16
      --grid_prompts 0 --learning_rate 1e-2 --threads 1 --quiet --dist_timeout 60 --precision fp32)
"$bin" "${args[@]}" --out "$out/straight" > /dev/null
run="$out/interrupted"
"$bin" "${args[@]}" --out "$run" > "$out/interrupted.log" 2>&1 &
pid=$!
# Ctrl-C as soon as the first epoch is logged (up to 5 min).
for _ in $(seq 1 3000); do
  [ -s "$run/metrics.jsonl" ] && break
  kill -0 "$pid" 2> /dev/null || break
  sleep 0.1
done
kill -INT "$pid"
status=0
wait "$pid" || status=$?
epochs=$(wc -l < "$run/metrics.jsonl")
if [ "$epochs" -ge 4 ]; then
  echo "sigint_resume_2ranks: the run finished before Ctrl-C took effect (status $status); nothing was tested" >&2
  exit 1
fi
[ "$status" -ne 0 ] || { echo "sigint_resume_2ranks: an interrupted run must not exit 0" >&2; exit 1; }
echo "sigint_resume_2ranks: stopped by Ctrl-C after $epochs of 4 epochs (exit status $status)"
compgen -G "$run/checkpoints/ckpt-*.safetensors" > /dev/null || { echo "no checkpoint after Ctrl-C" >&2; cat "$out/interrupted.log" >&2; exit 1; }
"$bin" "${args[@]}" --out "$run" --resume > /dev/null
cmp "$out/straight/adapters.safetensors" "$run/adapters.safetensors"
echo "sigint_resume_2ranks: adapters identical to the uninterrupted 2-rank run"
