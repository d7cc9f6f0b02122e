// cxrl_mimic: the reference program of the CXRL instantiation. Each subcommand lives in
// examples/cxrl_mimic/cmd_<name>.hpp and registers itself with add_<name>_command(app).
#include "cxrl_mimic/cmd_data.hpp"
#include "cxrl_mimic/cmd_make_mimic_fixture.hpp"
#include "cxrl_mimic/cmd_phantoms.hpp"
#include "cxrl_mimic/cmd_pretrain.hpp"
#include "cxrl_mimic/cmd_train_rewards.hpp"
#include "cxrl_mimic/cmd_main.hpp"
#include "cxrl_mimic/cmd_generate.hpp"
#include "cxrl_mimic/cmd_finetune.hpp"
#include "cxrl_mimic/cmd_evaluate.hpp"
#include "cxrl_mimic/cmd_check_learning.hpp"
#if __has_include("cxrl_mimic/cmd_label.hpp")
#include "cxrl_mimic/cmd_label.hpp"
#define CXRL_MIMIC_HAS_LABEL 1
#endif

#include <cxrl/io/cpu_kernels.hpp>
#include <cxrl/io/malloc_tuning.hpp>

#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  cxrl::io::use_best_cpu_kernels(argv);
  cxrl::io::retain_freed_memory();
  CLI::App app{"cxrl_mimic — CXRL (report → chest X-ray): phantom world, MIMIC-CXR-JPG data, labels, training"};
  app.require_subcommand(1);
  cxrl_mimic::add_phantoms_command(app);
  cxrl_mimic::add_make_mimic_fixture_command(app);
  cxrl_mimic::add_data_command(app);
  cxrl_mimic::add_pretrain_command(app);
  cxrl_mimic::add_train_rewards_command(app);
  cxrl_mimic::add_main_command(app);
  cxrl_mimic::add_generate_command(app);
  cxrl_mimic::add_finetune_command(app);
  cxrl_mimic::add_evaluate_command(app);
  cxrl_mimic::add_check_learning_command(app);
#ifdef CXRL_MIMIC_HAS_LABEL
  cxrl_mimic::add_label_command(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
