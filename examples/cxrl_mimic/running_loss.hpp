// The smoothed training loss the training commands show on their progress bars and report at the end.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace cxrl_mimic {

/// Exponential moving average of the loss, restarted at step 1.
struct RunningLoss {
  double keep = 0.95;  // weight of the running value
  double take = 0.05;  // weight of the new loss
  int precision = 4;   // digits in the status text
  double value = 0;

  /// Adds the loss of @p step; returns the progress-bar status ("loss 0.1234").
  std::string add(int64_t step, double loss) {
    value = step == 1 ? loss : keep * value + take * loss;
    char s[48];
    std::snprintf(s, sizeof s, "loss %.*f", precision, value);
    return s;
  }
};

}  // namespace cxrl_mimic
