/// @file
/// @brief Umbrella header: the whole library, layer by layer, bottom-up as docs/architecture.md orders them
/// (io → text → metrics → eval → data → nn → diffusion → policy → core → app → cxr).
#pragma once

#include <cxrl/version.hpp>

#include <cxrl/io/cpu_kernels.hpp>
#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/event_log.hpp>
#include <cxrl/io/figure.hpp>
#include <cxrl/io/font.hpp>
#include <cxrl/io/image.hpp>
#include <cxrl/io/interrupt.hpp>
#include <cxrl/io/json_file.hpp>
#include <cxrl/io/malloc_tuning.hpp>
#include <cxrl/io/plot.hpp>
#include <cxrl/io/progress.hpp>
#include <cxrl/io/safetensors.hpp>
#include <cxrl/io/safetensors_header.hpp>
#include <cxrl/io/state_dict.hpp>
#include <cxrl/io/stb.hpp>

#include <cxrl/text/clip_tokenizer.hpp>
#include <cxrl/text/wordpiece.hpp>

#include <cxrl/metrics/auroc.hpp>
#include <cxrl/metrics/fid.hpp>
#include <cxrl/metrics/msssim.hpp>

#include <cxrl/eval/bootstrap.hpp>
#include <cxrl/eval/table.hpp>

#include <cxrl/data/csv.hpp>
#include <cxrl/data/dataset.hpp>
#include <cxrl/data/gzip.hpp>
#include <cxrl/data/issues.hpp>
#include <cxrl/data/rng.hpp>
#include <cxrl/data/sample.hpp>
#include <cxrl/data/sections.hpp>

#include <cxrl/nn/activation.hpp>
#include <cxrl/nn/attention.hpp>
#include <cxrl/nn/autoencoder_kl.hpp>
#include <cxrl/nn/autoencoder_kl_config.hpp>
#include <cxrl/nn/bert.hpp>
#include <cxrl/nn/clip_text_model.hpp>
#include <cxrl/nn/densenet.hpp>
#include <cxrl/nn/diffusers_config.hpp>
#include <cxrl/nn/embeddings.hpp>
#include <cxrl/nn/layers.hpp>
#include <cxrl/nn/lora_linear.hpp>
#include <cxrl/nn/meta.hpp>
#include <cxrl/nn/model_concepts.hpp>
#include <cxrl/nn/precision.hpp>
#include <cxrl/nn/resnet.hpp>
#include <cxrl/nn/resnet_block.hpp>
#include <cxrl/nn/torchscript.hpp>
#include <cxrl/nn/transformer_2d.hpp>
#include <cxrl/nn/unet_2d_condition.hpp>
#include <cxrl/nn/unet_2d_condition_config.hpp>
#include <cxrl/nn/unet_blocks.hpp>

#include <cxrl/diffusion/anchor_pretraining.hpp>
#include <cxrl/diffusion/ddim.hpp>
#include <cxrl/diffusion/ddim_config.hpp>
#include <cxrl/diffusion/denoiser_training.hpp>
#include <cxrl/diffusion/guidance.hpp>
#include <cxrl/diffusion/loss.hpp>
#include <cxrl/diffusion/pipeline.hpp>
#include <cxrl/diffusion/schedule.hpp>
#include <cxrl/diffusion/stable_diffusion.hpp>
#include <cxrl/diffusion/vae_training.hpp>

#include <cxrl/policy/ace.hpp>
#include <cxrl/policy/lora.hpp>
#include <cxrl/policy/lora_ace_policy.hpp>

#include <cxrl/core/adapters_guard.hpp>
#include <cxrl/core/baselines.hpp>
#include <cxrl/core/concepts.hpp>
#include <cxrl/core/ddim_sampler.hpp>
#include <cxrl/core/distributed.hpp>
#include <cxrl/core/epoch_log.hpp>
#include <cxrl/core/launch.hpp>
#include <cxrl/core/losses.hpp>
#include <cxrl/core/reward_sum.hpp>
#include <cxrl/core/trainer.hpp>
#include <cxrl/core/trainer_state.hpp>
#include <cxrl/core/trajectory.hpp>

// app/settings.hpp is left out: it needs CLI11, which only programs link.
#include <cxrl/app/data_files.hpp>
#include <cxrl/app/finetune.hpp>
#include <cxrl/app/heldout.hpp>
#include <cxrl/app/policy_settings.hpp>
#include <cxrl/app/precision_choice.hpp>
#include <cxrl/app/run_folder.hpp>

#include <cxrl/cxr/align_reward.hpp>
#include <cxrl/cxr/canonical.hpp>
#include <cxrl/cxr/consist_reward.hpp>
#include <cxrl/cxr/cxr_clip.hpp>
#include <cxrl/cxr/diag_reward.hpp>
#include <cxrl/cxr/evaluation.hpp>
#include <cxrl/cxr/image_set.hpp>
#include <cxrl/cxr/labeler.hpp>
#include <cxrl/cxr/labeler_rules.hpp>
#include <cxrl/cxr/mimic.hpp>
#include <cxrl/cxr/mimic_fixture.hpp>
#include <cxrl/cxr/observations.hpp>
#include <cxrl/cxr/phantom.hpp>
#include <cxrl/cxr/phantom_anatomy.hpp>
#include <cxrl/cxr/phantom_dataset.hpp>
#include <cxrl/cxr/phantom_devices.hpp>
#include <cxrl/cxr/phantom_findings.hpp>
#include <cxrl/cxr/phantom_posture.hpp>
#include <cxrl/cxr/posture.hpp>
#include <cxrl/cxr/report_writer.hpp>
#include <cxrl/cxr/reward_model_files.hpp>
#include <cxrl/cxr/reward_models.hpp>
#include <cxrl/cxr/reward_set.hpp>
#include <cxrl/cxr/reward_training.hpp>
#include <cxrl/cxr/rewards.hpp>
#include <cxrl/cxr/sample.hpp>
#include <cxrl/cxr/symmetry.hpp>
#include <cxrl/cxr/xrv_densenet.hpp>
