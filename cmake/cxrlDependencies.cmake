# Finds cxrl's dependencies; shared by the build tree and (through find_dependency) the package config.
if(NOT TARGET torch)
  find_package(Torch REQUIRED)
endif()
find_package(xtensor REQUIRED)
find_package(range-v3 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
