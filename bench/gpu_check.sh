#!/usr/bin/env bash
# Every CUDA path of astrogan in one run, under 8 minutes on one GPU (the architectures side by side: on an H200
# each astrogan process spends ~10 s starting, so one after another took ~11 minutes):
#   - training: dcgan, fastgan and stylegan2, AMP off and on (channels_last, as the loop does on CUDA);
#     2-process torchrun with NCCL for each architecture when there are 2 GPUs or more;
#   - resume on CUDA: each run is continued from its mid-run state and compared with the uninterrupted run
#     (bit for bit), beside a control (the same run twice) that tells a resume bug from CUDA nondeterminism;
#   - generation on CUDA against the CPU, and export (ONNX, TorchScript) of the CUDA-trained runs, the ONNX
#     model drawn again through ONNX Runtime;
#   - images/s of astrogan's FastGAN and lightweight-gan's generator at 256 and 512 px, side by side
#     (bench/generate_speed.py --device cuda), and their training step (bench/train_throughput.py).
#
#   bench/gpu_check.sh [OUT_DIR]          # logs, runs and the benches' JSON go to OUT_DIR (default: a temp dir)
#
# Environment:
#   PYTHON                 the interpreter with a CUDA build of torch and astrogan's dependencies (python3)
#   GPU_CHECK_STEPS        training steps per run (12; states saved at half and at the end)
#   GPU_CHECK_SIZE         training resolution (64)
#   GPU_CHECK_COMPILE=1    also time torch.compile in the generation bench
#   GPU_CHECK_SKIP_LWGAN=1 leave lightweight-gan out (it needs PyPI, or ASTROGAN_LWGAN_WHEELS=DIR offline;
#                          see bench/lwgan_env.py; ASTROGAN_LWGAN_VENV=DIR reuses an environment)
#   GPU_CHECK_DEVICE=cpu   with GPU_CHECK_TINY=1: a dry run of this script's logic on a CPU (tiny models);
#                          not a GPU check, and it says so
# Exit status: 0 all checks passed; 1 some failed (listed at the end); 2 it could not start (no CUDA...).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cd "$repo"
PY=${PYTHON:-python3}
device=${GPU_CHECK_DEVICE:-cuda}
steps=${GPU_CHECK_STEPS:-12}
half=$((steps / 2))
size=${GPU_CHECK_SIZE:-64}
t_start=$SECONDS

die() {
    printf 'gpu_check: cannot start: %s\n' "$*" >&2
    exit 2
}

# ---- preflight: loudly and early -----------------------------------------------------------------------------
command -v "$PY" >/dev/null 2>&1 || die "no interpreter '$PY' (set PYTHON=/path/to/python)"
rc=0
why=$("$PY" -c '
import sys
try:
    import torch
except Exception as exc:
    print(f"{sys.executable} cannot import torch ({exc})"); sys.exit(3)
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no CUDA device"); sys.exit(4)
' 2>&1) || rc=$?
if ((rc == 3)) || { ((rc == 4)) && [[ $device == cuda ]]; }; then
    smi="not installed"
    command -v nvidia-smi >/dev/null 2>&1 && smi=$(nvidia-smi -L 2>&1 | head -n 1 || true)
    die "$why (nvidia-smi: $smi); this script checks astrogan's GPU paths and needs a CUDA build of torch and a GPU"
elif ((rc != 0 && rc != 4)); then
    die "$PY failed: $why"
elif [[ $device != cuda && ${GPU_CHECK_TINY:-0} != 1 ]]; then
    die "GPU_CHECK_DEVICE=$device is for a dry run of the script with GPU_CHECK_TINY=1 only"
fi
if ! "$PY" -c 'import astrogan' 2>/dev/null; then # not installed: this checkout's sources
    export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$PY" -c '
import importlib
names = ["astrogan.cli.main", "astrogan.training.loop", "astrogan.export.onnx", "onnx", "onnxruntime", "PIL"]
bad = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        bad.append(f"{name} ({type(exc).__name__}: {exc})")
print("; ".join(bad))
')
[[ -z $missing ]] || die "cannot import $missing; install astrogan and its dependencies into $PY's environment"

out=${1:-}
[[ -n $out ]] || out=$(mktemp -d "${TMPDIR:-/tmp}/astrogan-gpu-check.XXXXXX")
mkdir -p "$out/logs" "$out/runs" "$out/resumed" "$out/gen" "$out/export"
export ASTROGAN_QUIET=1 PYTHONUNBUFFERED=1
ngpu=0
[[ $device == cuda ]] && ngpu=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
"$PY" -c '
import platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (dry run)"
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {gpu}, python {platform.python_version()}")
'
printf 'gpu_check: device %s, %s GPU(s), %s steps at %s px, output in %s\n' "$device" "$ngpu" "$steps" "$size" "$out"
[[ $device == cuda ]] || printf 'gpu_check: DRY RUN ON %s: this checks the script, not the GPU paths\n' "$device"

ag=("$PY" -m astrogan.cli.main)
# One line per check, appended by checks that may run side by side (short O_APPEND writes do not interleave).
results=$out/results.txt
: >"$results"

# check NAME TIMEOUT_S CMD...: run CMD with its output in logs/NAME.log; PASS or FAIL with the time it took,
# printed in one write when it ends (checks of different architectures run at the same time).
check() {
    local name=$1 limit=$2 rc=0 t0=$SECONDS line
    shift 2
    timeout "$limit" "$@" >"$out/logs/$name.log" 2>&1 || rc=$?
    local dt=$((SECONDS - t0))
    if ((rc == 0)); then
        printf '== %-34s PASS %4ss\n' "$name" "$dt"
        printf 'PASS %ss %s\n' "$dt" "$name" >>"$results"
    else
        line=$(printf '== %-34s FAIL %4ss (exit %s)' "$name" "$dt" "$rc")
        ((rc == 124)) && line=$(printf '== %-34s FAIL %4ss (timed out after %ss)' "$name" "$dt" "$limit")
        printf '%s\n%s\n' "$line" "$(tail -n 6 "$out/logs/$name.log" | sed 's/^/     | /')"
        printf 'FAIL %ss %s: exit %s, log %s\n' "$dt" "$name" "$rc" "$out/logs/$name.log" >>"$results"
    fi
    return 0
}

run_dir() { # the newest run directory named NAME under DIR
    local found
    found=$(find "$1" -maxdepth 1 -type d -name "*-$2" | sort | tail -n 1)
    [[ -n $found ]] || return 1
    printf '%s\n' "$found"
}

tiny_model() { # --model flags of a tiny network for the dry run
    [[ ${GPU_CHECK_TINY:-0} == 1 ]] || return 0
    case $1 in
    dcgan) printf '%s\n' --model z_dim=8 --model ngf=8 --model ndf=8 ;;
    fastgan) printf '%s\n' --model z_dim=8 --model ngf=4 --model ndf=4 ;;
    stylegan2) printf '%s\n' --model z_dim=32 --model w_dim=32 --model channel_base=512 --model channel_max=32 --model mapping_layers=2 ;;
    esac
}

# compare_states A B: bit-exact comparison of two state-*.pt files (G, D, G_ema, optimizers); JSON on stdout.
cat >"$out/compare_states.py" <<'EOF'
import json, sys, torch
a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in sys.argv[1:3])
def tensors(obj, prefix=""):
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors(v, f"{prefix}/{i}")
out = {}
for part in ("G", "D", "G_ema", "opt_g", "opt_d"):
    ta, tb = dict(tensors(a[part])), dict(tensors(b[part]))
    assert ta.keys() == tb.keys(), part
    diff = max(((x.double() - tb[k].double()).abs().max().item() if x.is_floating_point() else float(not torch.equal(x, tb[k]))) for k, x in ta.items())
    out[part] = diff
out["bit_exact"] = all(v == 0 for v in out.values())
print(json.dumps(out))
sys.exit(0 if out["bit_exact"] else 1)
EOF
compare_states=("$PY" "$out/compare_states.py")

# ---- data --------------------------------------------------------------------------------------------------
check dataset 120 "$PY" -c '
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from train_throughput import _dataset
root = Path(sys.argv[1]); root.mkdir(parents=True, exist_ok=True)
print(_dataset(root, int(sys.argv[2]), num=64))
' "$out/data" "$size"
ds=$out/data/ds
[[ -d $ds ]] || {
    printf 'gpu_check: no dataset, nothing else can run\n' >&2
    exit 1
}

# ---- training: each architecture, AMP off and on, then resume from the mid-run state ------------------------
train_args=(train --data "$ds" --image-size "$size" --batch-size 16 --num-train-steps "$steps"
    --save-every "$half" --evaluate-every "$half" --device "$device" --aug-prob 0.2)
train_arch() { # ARCH: AMP off then on, each resumed from its mid-run state and compared with the whole run
    local arch=$1 amp name run cut end_state
    local -a model flags
    mapfile -t model < <(tiny_model "$arch")
    for amp in off on; do
        name=$arch-amp-$amp
        flags=()
        [[ $amp == on ]] && flags=(--amp)
        check "train-$name" 180 "${ag[@]}" "${train_args[@]}" --arch "$arch" --results-dir "$out/runs" \
            --name "$name" ${flags[@]+"${flags[@]}"} ${model[@]+"${model[@]}"}
        run=$(run_dir "$out/runs" "$name") || continue
        # Resume: a copy of the run cut back to its mid-run state, continued to the end, against the original.
        cut=$out/resumed/$(basename "$run")
        rm -rf "$cut" && cp -r "$run" "$cut"
        end_state=$(printf 'state-%07d.pt' "$steps")
        rm -f "$cut/checkpoints/$end_state" "$cut/snapshots/step-0000000.png"
        check "resume-$name" 180 "${ag[@]}" train --resume-from "$cut"
        # A resumed run draws no step-0 snapshot; one that started again from scratch would (and, being
        # deterministic, could still end bit-exact): so the snapshot must stay gone.
        check "resume-$name-continued" 10 test ! -e "$cut/snapshots/step-0000000.png"
        if [[ -f $cut/checkpoints/$end_state ]]; then
            check "resume-$name-bit-exact" 60 "${compare_states[@]}" "$run/checkpoints/$end_state" \
                "$cut/checkpoints/$end_state"
        fi
    done
}
# Control: the same run twice. If these differ, CUDA training is not deterministic here (cuDNN, atomics) and a
# resume that differs is not a resume bug. Runs beside the three architectures.
train_control() {
    local -a model
    mapfile -t model < <(tiny_model fastgan)
    check train-fastgan-control 180 "${ag[@]}" "${train_args[@]}" --arch fastgan --results-dir "$out/runs" \
        --name fastgan-control ${model[@]+"${model[@]}"}
}
for arch in dcgan fastgan stylegan2; do
    train_arch "$arch" &
done
train_control &
wait
if a=$(run_dir "$out/runs" fastgan-amp-off) && b=$(run_dir "$out/runs" fastgan-control); then
    end_state=$(printf 'state-%07d.pt' "$steps")
    if ! "${compare_states[@]}" "$a/checkpoints/$end_state" "$b/checkpoints/$end_state" >"$out/logs/control.json"; then
        printf 'WARN: the same CUDA run twice is not bit-exact (%s): resume differences above may be nondeterminism\n' \
            "$(cat "$out/logs/control.json")"
        printf 'WARN same run twice differs on %s: %s\n' "$device" "$(cat "$out/logs/control.json")" >>"$results"
    fi
fi

# ---- 2 processes (torchrun, NCCL) ------------------------------------------------------------------------------
if ((ngpu >= 2)); then
    for arch in dcgan fastgan stylegan2; do
        mapfile -t model < <(tiny_model "$arch")
        check "ddp-$arch" 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m astrogan.cli.main \
            "${train_args[@]}" --arch "$arch" --results-dir "$out/runs" --name "ddp-$arch" ${model[@]+"${model[@]}"}
    done
    if run=$(run_dir "$out/runs" ddp-fastgan); then
        cut=$out/resumed/$(basename "$run")
        rm -rf "$cut" && cp -r "$run" "$cut"
        end_state=$(printf 'state-%07d.pt' "$steps")
        rm -f "$cut/checkpoints/$end_state" "$cut/snapshots/step-0000000.png"
        check ddp-resume-fastgan 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
            -m astrogan.cli.main train --resume-from "$cut"
        check ddp-resume-fastgan-bit-exact 60 "${compare_states[@]}" "$run/checkpoints/$end_state" \
            "$cut/checkpoints/$end_state"
    fi
else
    printf '== ddp: SKIPPED (%s GPU; torchrun with NCCL needs 2)\n' "$ngpu"
    printf 'SKIP ddp: %s GPU\n' "$ngpu" >>"$results"
fi

# ---- generation on the GPU against the CPU; export; the exported model through ONNX Runtime --------------------
generate_arch() { # ARCH: its AMP-off run drawn on the device and on the CPU, exported, drawn through ONNX Runtime
    local arch=$1 run
    run=$(run_dir "$out/runs" "$arch-amp-off") || return 0
    check "generate-$arch-$device" 120 "${ag[@]}" generate --run "$run" --seeds 0-15 --device "$device" \
        --out "$out/gen/$arch-$device"
    check "generate-$arch-reference-cpu" 120 "${ag[@]}" generate --run "$run" --seeds 0-15 --device cpu \
        --out "$out/gen/$arch-reference-cpu"
    check "export-$arch-onnx" 180 "${ag[@]}" export --run "$run" --format onnx --out "$out/export/$arch-onnx"
    check "export-$arch-torchscript" 180 "${ag[@]}" export --run "$run" --format torchscript \
        --out "$out/export/$arch-torchscript"
    check "generate-$arch-onnx" 120 "${ag[@]}" generate --model "$out/export/$arch-onnx/model.onnx" --seeds 0-15 \
        --out "$out/gen/$arch-onnx"
    check "same-pictures-$arch" 60 "$PY" -c '
import sys
from pathlib import Path
import numpy as np
from PIL import Image
ref, others = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
worst = 0
for png in sorted(ref.glob("seed*.png")):
    a = np.asarray(Image.open(png), dtype=np.int16)
    for o in others:
        worst = max(worst, int(np.abs(a - np.asarray(Image.open(o / png.name), dtype=np.int16)).max()))
print(f"largest 8-bit difference from {ref.name}: {worst}")
sys.exit(0 if worst <= 2 else 1)
' "$out/gen/$arch-$device" "$out/gen/$arch-reference-cpu" "$out/gen/$arch-onnx"
}
for arch in dcgan fastgan stylegan2; do
    generate_arch "$arch" &
done
wait

# ---- speed: astrogan and lightweight-gan side by side ---------------------------------------------------------
gen_args=(--device "$device" --sizes "256,512" --batch-sizes "1,8,32" --min-seconds 2 --rounds 2 --no-compile)
race_args=(--device "$device" --archs '' --race-sizes "64,128" --race-steps 20 --lw-steps 8 --lw-flop-steps 2
    --batch-size 16 --no-compile --no-state-sizes)
if [[ ${GPU_CHECK_TINY:-0} == 1 ]]; then
    gen_args=(--device "$device" --quick)
    race_args=(--device "$device" --quick --archs '' --no-state-sizes)
fi
[[ ${GPU_CHECK_COMPILE:-0} == 1 ]] && gen_args+=(--compile)
if [[ ${GPU_CHECK_SKIP_LWGAN:-0} == 1 ]]; then
    gen_args+=(--no-lwgan)
    race_args+=(--no-lwgan)
fi
# The benches print one JSON line on stdout: kept apart from their log.
# shellcheck disable=SC2016  # $1 and $@ belong to the inner bash
to_json='json=$1; shift; "$@" >"$json"'
check speed-generate 300 bash -c "$to_json" _ "$out/generate_speed.json" "$PY" bench/generate_speed.py "${gen_args[@]}"
check speed-train 300 bash -c "$to_json" _ "$out/train_throughput.json" "$PY" bench/train_throughput.py "${race_args[@]}"

"$PY" - "$out/generate_speed.json" "$out/train_throughput.json" <<'EOF' || true
import json, sys
from pathlib import Path

def load(p):
    try:
        return json.loads(Path(p).read_text().strip().splitlines()[-1])
    except Exception:
        return None

gen, tr = load(sys.argv[1]), load(sys.argv[2])
for bench in (gen, tr):
    if bench and "error" in bench.get("baseline", {}):
        print(f"WARN: no lightweight-gan in {bench['bench']}: {bench['baseline']['error']}")
if gen:
    print("\ngeneration, images/s (astrogan FastGAN ngf=64 | lightweight-gan default generator):")
    print(f"{'px':>5} {'batch':>5} {'eager':>9} {'script':>9} {'onnxrt':>9} {'compile':>9} {'lw-gan':>9} {'best/lw':>8}")
    for r in gen["results"]:
        for b in r["batches"]:
            ips = b["images_per_s"]
            cell = lambda k: f"{ips[k]:9.1f}" if k in ips else f"{'-':>9}"
            ratio = b.get("best_ratio_vs_lightweight_gan", "-")
            print(f"{r['image_size']:>5} {b['batch_size']:>5} {cell('pytorch_eager')} {cell('torchscript')} "
                  f"{cell('onnxruntime')} {cell('torch_compile')} {cell('lightweight_gan')} {ratio:>8}")
if tr:
    print("\ntraining, images/s (astrogan FastGAN ngf=ndf=64 loop | lightweight-gan Trainer.train):")
    for e in tr["race"]:
        a, lw = e.get("astrogan", {}), e.get("lightweight_gan", {})
        print(f"{e['image_size']:>5} px, batch {e['batch_size']}:  astrogan {a.get('images_per_s', a.get('error'))}  "
              f"lightweight-gan {lw.get('images_per_s', lw.get('error'))}  "
              f"ratio {e.get('ratio_images_per_s_astrogan_over_lightweight_gan', '-')}")
EOF

# ---- summary ---------------------------------------------------------------------------------------------------
elapsed=$((SECONDS - t_start))
failed=$(grep -c '^FAIL' "$results" || true)
warned=$(grep -c '^WARN' "$results" || true)
printf '\ngpu_check summary (%ss, device %s):\n' "$elapsed" "$device"
sed 's/^/  /' "$results"
((elapsed <= 480)) || printf 'WARN: took %ss, over the 8-minute budget\n' "$elapsed"
[[ $device == cuda ]] || printf 'DRY RUN on %s: no GPU path was checked\n' "$device"
if ((failed > 0)); then
    printf 'gpu_check: %s check(s) FAILED, %s warning(s)\n' "$failed" "$warned"
    exit 1
fi
printf 'gpu_check: all checks passed, %s warning(s)\n' "$warned"
