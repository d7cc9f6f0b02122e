// knee_rl: the second reference program. The library's CXRL machinery reassembled for another modality, AP knee
// radiographs with Kellgren–Lawrence grades: a procedural world (examples/knee_rl/world.hpp), a small pixel-space
// anchor, a reward written from docs/concepts/reward.md and one that wraps a traced classifier.
#include "knee_rl/cmd_check_rewards.hpp"
#include "knee_rl/cmd_finetune.hpp"
#include "knee_rl/cmd_pretrain.hpp"

#include <cxrl/io/cpu_kernels.hpp>
#include <cxrl/io/malloc_tuning.hpp>

#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  cxrl::io::use_best_cpu_kernels(argv);
  cxrl::io::retain_freed_memory();
  CLI::App app{"knee_rl — DDPO for caption → knee radiograph: procedural world, anchor pretraining, fine-tuning, held-out evaluation"};
  app.require_subcommand(1);
  knee_rl::add_pretrain_commands(app);
  knee_rl::add_finetune_commands(app);
  knee_rl::add_check_rewards_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "knee_rl: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
