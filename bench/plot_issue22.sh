#!/bin/sh
# Issue 22's pictures of accuracy against the seconds of the whole training process (BENCHMARKS.md, "A moving
# average of the weights by default" and later), from the result files each series names. Run from the repository root.
set -e
P="python bench/plot_accuracy_time.py"
# On a CPU with bf16 (EPYC family 26, 2026-12-08; BENCHMARKS.md, "Attention by plain products in bf16"): the default
# with the attention change and before it, fine-tuning and PEFT's LoRA of every linear layer (2e-3, bf16, length-grouped
# batches, through transformers' fused attention) timed on the same machine.
$P --title "movie polarity, 2,000 train / 1,000 test, 2 CPU cores, bf16 (2026-12-08)" \
  --out bench/results/accuracy-time-movie2000.png --legend best \
  --series "default now: attention by products=s8-movie2000-products-bf16" \
  --series "default before: the fused kernel=s8-movie2000-default-bf16" \
  --series "full fine-tuning, fp32, shuffled=s8-fullft-movie2000-fp32-seed42" \
  --series "PEFT LoRA, every linear, bf16=s8-lora-all-bf16-grouped-train2000-test1000-seed42,s8-lora-all-bf16-grouped-train2000-test1000-seed1,s8-lora-all-bf16-grouped-train2000-test1000-seed2"
$P --title "question types, 600 train / 1,000 test, 2 CPU cores, bf16 (2026-12-08)" \
  --out bench/results/accuracy-time-questions.png --legend best \
  --series "default now: attention by products=s8-questions-products-bf16" \
  --series "default before: the fused kernel=s8-questions-default-bf16" \
  --series "full fine-tuning, fp32, shuffled=s8-fullft-questions-fp32-seed42,s8-fullft-questions-fp32-seed1,s8-fullft-questions-fp32-seed2" \
  --series "PEFT LoRA, every linear, bf16=s8-lora-all-bf16-grouped-questions-seed42,s8-lora-all-bf16-grouped-questions-seed1,s8-lora-all-bf16-grouped-questions-seed2"
$P --title "movie polarity, full split 8,454 / 2,114, 2 CPU cores, bf16 (2026-12-08)" \
  --out bench/results/accuracy-time-full-split.png --legend best \
  --series "default now: attention by products=s8-full-split-products-bf16" \
  --series "default before: the fused kernel=s8-full-split-default-bf16" \
  --series "full fine-tuning, fp32, shuffled=s8-fullft-full-split-fp32-seed42" \
  --series "PEFT LoRA, every linear, bf16=s8-lora-all-bf16-grouped-full-split-seed42,s8-lora-all-bf16-grouped-full-split-seed1,s8-lora-all-bf16-grouped-full-split-seed2"
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
