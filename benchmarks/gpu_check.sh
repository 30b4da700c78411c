#!/usr/bin/env bash
# The GPU checks of one short lease, in one command:
#   1. the Triton attention kernels against their references, timed (SAM ViT-H / ViT-B shapes, whole
#      encoders patched vs unpatched, the real LiteMedSAM encoder among them): benchmarks/kernels.py;
#   2. CUDA latency of the real teacher and the students (PyTorch, fp32, batch 1 and 16; LiteMedSAM also
#      through torch.compile): medkd bench run;
#   3. LiteMedSAM on a manifest of real test objects (medkd eval) on CUDA and on the CPU, paired object
#      by object (benchmarks/eval_parity.py): the same DSC within 0.01, or the CUDA path is wrong.
#
#   benchmarks/gpu_check.sh OUT [MANIFEST DATA_ROOT]
#
# Needs medkd importable (pip install -e '.[train]', or its wheel and dependencies on PYTHONPATH).
# Every step runs even if one before it failed; the exit status says whether all passed.
set -uo pipefail
out=$(realpath -m "${1:?usage: benchmarks/gpu_check.sh OUT [MANIFEST DATA_ROOT]}")
manifest=${2:+$(realpath "$2")}
data_root=${3:+$(realpath "$3")}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
status=0

# Not from the repository root: its top-level folders would shadow medkd's installed subpackages.
medkd() { (cd "${TMPDIR:-/tmp}" && python3 -m medkd "$@") || status=1; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/nvidia-smi.csv"
python3 "$repo/benchmarks/kernels.py" --out "$out/kernels.json" --budget-s 200 || status=1

bench="$out/bench-cuda.json"
for model in litemedsam tinyvit-256 timm-sam unet; do
    for batch in 1 16; do
        medkd bench run --model "$model" --device cuda --batch-size "$batch" --iters 50 --out "$bench" \
            $([ -f "$bench" ] && echo --append)
    done
done
medkd bench run --model litemedsam --device cuda --backend torch-compile --iters 50 --out "$bench" --append

if [ -n "$manifest" ]; then
    for device in cuda cpu; do
        medkd eval --model litemedsam --data "$manifest" --data-root "$data_root" --device "$device" \
            --no-cache --no-volumes --out "$out/eval-litemedsam-$device.json"
    done
    python3 "$repo/benchmarks/eval_parity.py" "$out/eval-litemedsam-cpu.json" "$out/eval-litemedsam-cuda.json" \
        --out "$out/eval-parity.json" || status=1
fi
exit "$status"
