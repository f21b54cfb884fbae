#!/bin/sh
# Issue 22's pictures of accuracy against the seconds of the whole training process (BENCHMARKS.md, "A moving
# average of the weights by default"), from the result files each series names. Run from the repository root.
set -e
P="python bench/plot_accuracy_time.py"
FT2000="fullft-process-train2000-test1000-seed42,fullft-process-train2000-test1000-seed1,fullft-process-train2000-test1000-seed2"
$P --title "movie polarity, 2,000 train / 1,000 test, 2 CPU cores (2026-12-07)" \
  --out bench/results/accuracy-time-movie2000.png \
  --series "default now: + moving average=cli-movie2000-ema995" \
  --series "default before: rank-4 updates=cli-movie2000-defaults-lora4-late" \
  --series "full fine-tuning, fp32, shuffled=$FT2000" \
  --series "full fine-tuning, bf16, grouped=fullft-bf16-grouped-train2000-test1000-seed42,fullft-bf16-grouped-train2000-test1000-seed1,fullft-bf16-grouped-train2000-test1000-seed2" \
  --series "PEFT LoRA, query+value=baselines-lora-train2000-test1000-seed42,baselines-lora-train2000-test1000-seed1,baselines-lora-train2000-test1000-seed2"
$P --title "question types, 600 train / 1,000 test, 2 CPU cores (2026-12-07)" \
  --out bench/results/accuracy-time-questions.png \
  --series "default now: + moving average=cli-questions-ema995" \
  --series "default before: rank-4 updates=cli-questions-defaults-lora4" \
  --series "full fine-tuning + LoRA, fp32 (one process)=baselines-questions-fullft-lora-seed42,baselines-questions-fullft-lora-seed1,baselines-questions-fullft-lora-seed2" \
  --series "full fine-tuning, bf16, grouped=fullft-bf16-grouped-questions-seed42,fullft-bf16-grouped-questions-seed1,fullft-bf16-grouped-questions-seed2" \
  --series "PEFT LoRA, query+value, 2e-3=baselines-questions-lora-lr2e-3-seed42,baselines-questions-lora-lr2e-3-seed1,baselines-questions-lora-lr2e-3-seed2" \
  --series "PEFT LoRA, every linear, bf16=lora-all-lr2e-3-bf16-grouped-questions-seed42"
$P --title "movie polarity, full split 8,454 / 2,114, 2 CPU cores (2026-12-07)" \
  --out bench/results/accuracy-time-full-split.png \
  --series "default now: + moving average=cli-movie-full-split-ema995" \
  --series "default before: rank-4 updates=cli-movie-full-split-defaults-lora4" \
  --series "full fine-tuning, fp32, shuffled=baselines-fullft-full-split,baselines-fullft-full-split-seed1,baselines-fullft-full-split-seed2" \
  --series "full fine-tuning, bf16, grouped=fullft-bf16-grouped-full-split-seed42" \
  --series "PEFT LoRA, query+value=baselines-lora-full-split-seed42,baselines-lora-full-split-seed1,baselines-lora-full-split-seed2" \
  --series "PEFT LoRA, every linear, bf16=lora-all-lr2e-3-bf16-grouped-full-split-seed42"
# The same three on a CPU without bf16 (EPYC family 25, fp32; BENCHMARKS.md, "Freezing the lower layers" and "Four
# epochs on the full split"): fine-tuning one seed each, side by side on that machine.
$P --title "movie polarity, 2,000 / 1,000, 2 cores, fp32 (2026-12-07)" \
  --out bench/results/accuracy-time-movie2000-fp32.png --legend best \
  --series "default now: + lower layers frozen after 40 %=s7-movie2000-waitfreeze-fp32" \
  --series "the same, sixth session (its freeze after the evaluation at step 126)=s6-movie2000-freeze0.4-fp32" \
  --series "--epochs 4=s7-movie2000-epochs4-fp32" \
  --series "default before the freeze=s5-movie2000-default-fp32-seed42,s6-movie2000-default-fp32-seeds-1-2" \
  --series "full fine-tuning, fp32, shuffled=s5-fullft-movie2000-fp32-seed42"
$P --title "question types, 600 / 1,000, 2 cores, fp32 (2026-12-07)" \
  --out bench/results/accuracy-time-questions-fp32.png --legend best \
  --series "default now: + lower layers frozen after 40 %=s6-questions-freeze0.4-fp32" \
  --series "default before the freeze=s6-questions-default-fp32" \
  --series "--start-layer 2=s7-questions-start2-fp32" \
  --series "full fine-tuning, fp32, shuffled=s6-fullft-questions-fp32-seed42"
$P --title "movie polarity, full split 8,454 / 2,114, 2 cores, fp32 (2026-12-07)" \
  --out bench/results/accuracy-time-full-split-fp32.png --legend best \
  --series "default now: 4 epochs, frozen after 40 %=s7-full-split-default-fp32" \
  --series "5 epochs, frozen after 40 %=s6-full-split-freeze0.4-fp32-seed42,s6-full-split-freeze0.4-fp32-seeds-1-2" \
  --series "default before the freeze (5 epochs)=s5-full-split-default-fp32-seed42" \
  --series "full fine-tuning, fp32, shuffled=s5-fullft-full-split-fp32-seed42"
