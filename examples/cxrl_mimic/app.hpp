// The library's program pieces (cxrl/app/) under this program's names.
#pragma once

#include <cxrl/app/policy_settings.hpp>
#include <cxrl/app/settings.hpp>
#include <cxrl/io/json_file.hpp>

namespace cxrl_mimic {

using cxrl::app::add_policy_settings;
using cxrl::app::make_policy;
using cxrl::app::make_sampler;
using cxrl::app::PolicySettings;
using cxrl::app::Settings;
using cxrl::io::write_json;  // atomic JSON files

}  // namespace cxrl_mimic
