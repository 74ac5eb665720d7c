#!/usr/bin/env bash
# Reproduce Park et al. (ICLR 2023) and Shekhar et al. on vitscope's own CIFAR-10 models, from
# pretraining to the report. docs/reproduction.md reads the numbers of one such run.
#
#   scripts/reproduce.sh [--quick] [--out DIR] [--models-only]
#
#   --quick   no pretraining: evaluate the models shipped in the zoo (zoo:moco-cifar10,
#             zoo:dino-cifar10, zoo:simmim-cifar10, zoo:mae-cifar10, zoo:hybrid-cifar10; those the
#             zoo lacks are left out with a note) with CPU-sized subsets.
#   default   pretrain MoCo v3, DINO, SimMIM, MAE and the hybrid (lambda 0.2) on CIFAR-10 (ViT-Ti/4,
#             $EPOCHS epochs, GPU-sized), add them to a zoo in $OUT/zoo, then evaluate them on the
#             full test set.
#   --models-only  only the per-model steps (pretrain, analyze, probe, fine-tune) of $METHODS, e.g.
#             METHODS=mae to evaluate one model as soon as it is trained.
#
# Environment: CIFAR (an ImageFolder with train/ and test/; default: torchvision's cifar10:train /
# cifar10:test), CUE (the cue-conflict stimuli, folder or tar; shape bias is skipped without it),
# VITSCOPE (the command; default .venv/bin/vitscope or vitscope on PATH), EPOCHS, DEVICE, and the
# subset sizes below. Every step writes a results folder under $OUT; a step whose folder is complete
# is skipped, so an interrupted run continues where it stopped.
set -euo pipefail

QUICK=0
MODELS_ONLY=0
OUT=runs/reproduce
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --models-only) MODELS_ONLY=1; shift ;;
    *) echo "usage: $0 [--quick] [--out DIR] [--models-only]" >&2; exit 2 ;;
  esac
done

if [ -z "${VITSCOPE:-}" ]; then
  if [ -x .venv/bin/vitscope ]; then VITSCOPE=.venv/bin/vitscope; else VITSCOPE=vitscope; fi
fi
V() { echo "+ vitscope $*" >&2; "$VITSCOPE" "$@"; }
TRAIN=${CIFAR:+$CIFAR/train}; TRAIN=${TRAIN:-cifar10:train}
TEST=${CIFAR:+$CIFAR/test}; TEST=${TEST:-cifar10:test}
DEVICE=${DEVICE:-auto}
METHODS=${METHODS:-moco dino simmim mae hybrid}
mkdir -p "$OUT"
if [ $QUICK = 1 ]; then  # the zoo's models only
  shipped=$("$VITSCOPE" zoo)
  kept=""
  for m in $METHODS; do
    if grep -q "^zoo:$m-cifar10 " <<<"$shipped"; then kept="$kept $m"; else echo "reproduce: zoo:$m-cifar10 is not in the zoo; left out" >&2; fi
  done
  METHODS=${kept# }
fi

if [ $QUICK = 1 ]; then   # CPU-sized: about 75 min on 2 cores (AMD EPYC, AVX2), 70 of them the 15 fine-tuning runs
  : "${N_ANALYZE:=1000}" "${N_PROBE_TRAIN:=10000}" "${N_PROBE_VAL:=2000}" "${PROBE_EPOCHS:=20}"
  # fine-tuning on the probes' 10,000 / 2,000 images: the smallest budget measured to beat a linear
  # probe (docs/reproduction.md, "Fine-tuning that means something")
  : "${FT_IMAGES:=10000}" "${FT_VAL:=2000}" "${FT_EPOCHS:=10}" "${N_CKA:=500}" "${N_NOISE:=300}"
  FT_RECIPE=(--batch-size 64 --lr 1e-3 --layer-decay 0.75 --mixup 0 --cutmix 0 --randaug "" --warmup-epochs 1
             --drop-path 0.1)
else                      # GPU-sized
  : "${N_ANALYZE:=10000}" "${N_PROBE_TRAIN:=50000}" "${N_PROBE_VAL:=10000}" "${PROBE_EPOCHS:=90}"
  : "${FT_IMAGES:=50000}" "${FT_VAL:=10000}" "${FT_EPOCHS:=100}" "${N_CKA:=5000}" "${N_NOISE:=10000}"
  FT_RECIPE=()
  export VITSCOPE_ZOO="$OUT/zoo"
  EPOCHS=${EPOCHS:-200}
  for m in $METHODS; do
    extra=(); [ $m = hybrid ] && extra=(--lambda 0.2)
    resume=(); [ -f "$OUT/pretrain-$m/checkpoint.pt" ] && resume=(--resume)
    if [ ! -f "$OUT/pretrain-$m/done" ]; then
      V pretrain --method $m --model vit_tiny_patch4_32 --data "$TRAIN" --epochs "$EPOCHS" --batch-size 512 \
        --device "$DEVICE" --out "$OUT/pretrain-$m" "${extra[@]}" "${resume[@]}"
      touch "$OUT/pretrain-$m/done"
    fi
  done
fi

zoo() { echo "zoo:$1-cifar10"; }
done_file() { [ -f "$1" ]; }

for m in $METHODS; do
  done_file "$OUT/analyze-$m/results.json" || \
    V analyze --model "$(zoo $m)" --data "$TEST" --images "$N_ANALYZE" --device "$DEVICE" --out "$OUT/analyze-$m"
  done_file "$OUT/probe-$m/probe.json" || \
    V probe --model "$(zoo $m)" --train-data "$TRAIN" --val-data "$TEST" --images "$N_PROBE_TRAIN" \
      --val-images "$N_PROBE_VAL" --epochs "$PROBE_EPOCHS" --save-probe --probe-at cls:-1 --no-cache-features \
      --device "$DEVICE" --out "$OUT/probe-$m"
  if [ $QUICK = 0 ] && [ ! -f "$OUT/zoo/.$m-added" ]; then  # the manifest gets the full-test-set accuracies
    extra=(); [ $m = hybrid ] && extra=(--note "lambda = 0.2")
    V zoo add "$m-cifar10" --run "$OUT/pretrain-$m" --probe "$OUT/probe-$m" --budget "GPU, $EPOCHS epochs" "${extra[@]}"
    touch "$OUT/zoo/.$m-added"
  fi
done

# The comparisons that need no fine-tuning come first, so that a run cut short already has them.
if [ $MODELS_ONLY = 0 ]; then
  # Minibatch CKA and prediction agreement (linear probes at the last block) of every pair (Shekhar Figs. 1, 2, 4)
  set -- $METHODS
  while [ $# -gt 1 ]; do
    a=$1; shift
    for b in "$@"; do
      done_file "$OUT/cka-$a-$b/results.json" || \
        V compare --model "$(zoo $a)" --model "$(zoo $b)" --probe "$OUT/probe-$a/probe.pt" \
          --probe "$OUT/probe-$b/probe.pt" --data "$TEST" --images "$N_CKA" --device "$DEVICE" --out "$OUT/cka-$a-$b"
    done
  done

  # Frequency-band noise and cue-conflict shape bias of the linear-probe classifiers (Park Fig. 8)
  models=(); probes=()
  for m in $METHODS; do models+=(--model "$(zoo $m)"); probes+=(--probe "$OUT/probe-$m/probe.pt"); done
  cue=(); [ -n "${CUE:-}" ] && cue=(--cue-conflict "$CUE" --class-map cifar10)
  done_file "$OUT/robustness/results.json" || \
    V robustness "${models[@]}" "${probes[@]}" --data "$TEST" --images "$N_NOISE" "${cue[@]}" \
      --device "$DEVICE" --out "$OUT/robustness"
fi

# Fine-tuning of every model, then with the first or last two blocks re-initialised (Park et al. Fig. F.3)
for variant in "" first last; do
  for m in $METHODS; do
    name=ft-$m${variant:+-$variant}
    reinit=(); [ -n "$variant" ] && reinit=(--reinit "$variant:2")
    resume=(); [ -f "$OUT/$name/checkpoint.pt" ] && resume=(--resume)
    done_file "$OUT/$name/finetune.json" || \
      V finetune --model "$(zoo $m)" --train-data "$TRAIN" --val-data "$TEST" --images "$FT_IMAGES" \
        --val-images "$FT_VAL" --epochs "$FT_EPOCHS" "${FT_RECIPE[@]}" "${reinit[@]}" "${resume[@]}" \
        --device "$DEVICE" --out "$OUT/$name"
  done
done

[ $MODELS_ONLY = 1 ] && exit 0

# ... and of each pre-trained model against its fine-tuned self and against fine-tuned MoCo (Shekhar Fig. 5)
for m in $METHODS; do
  done_file "$OUT/cka-$m-ft-$m/results.json" || \
    V compare --model "$(zoo $m)" --model "$OUT/ft-$m/checkpoint.pt" --data "$TEST" --images "$N_CKA" \
      --layer-type block --device "$DEVICE" --out "$OUT/cka-$m-ft-$m"
  [ $m = moco ] || done_file "$OUT/cka-moco-ft-$m/results.json" || \
    V compare --model "$(zoo moco)" --model "$OUT/ft-$m/checkpoint.pt" --data "$TEST" --images "$N_CKA" \
      --layer-type block --device "$DEVICE" --out "$OUT/cka-moco-ft-$m"
done

labels=(); for m in $METHODS; do labels+=(--label "$m"); done
V plot $(for m in $METHODS; do echo "$OUT/analyze-$m"; done) "${labels[@]}" --out "$OUT/overlay"
V plot $(for m in moco simmim; do echo "$OUT/analyze-$m"; done) --label "MoCo v3" --label SimMIM --out "$OUT/overlay-moco-simmim"

families=(--family moco=cl --family dino=cl --family simmim=mim --family mae=mim --family hybrid=hybrid)
for m in $METHODS; do
  fam=cl; [ $m = simmim ] || [ $m = mae ] && fam=mim; [ $m = hybrid ] && fam=hybrid
  families+=(--family "ft-$m=$fam-ft")
done
V report "$OUT"/overlay "$OUT"/overlay-moco-simmim "$OUT"/analyze-* "$OUT"/probe-* "$OUT"/ft-* "$OUT"/cka-* \
  "$OUT"/robustness "${families[@]}" --title "vitscope: Park et al. and Shekhar et al. on CIFAR-10" \
  --findings-markdown "$OUT/findings.md" --out "$OUT/report.html"
