# Finds cxrl's dependencies; shared by the build tree and (through find_dependency) the package config.
#
# Imported targets are directory-scoped: found inside cxrl's own directory (add_subdirectory, FetchContent), Torch's
# `torch_cpu` and the others would be invisible to the project that links cxrl::cxrl ("Target torch_cpu not found").
# Promoting every target found here, including those Torch's config finds for itself, makes them global.
set(CMAKE_FIND_PACKAGE_TARGETS_GLOBAL ON)
if(NOT TARGET torch)
  find_package(Torch REQUIRED)
endif()
find_package(range-v3 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
include(${CMAKE_CURRENT_LIST_DIR}/cxrlStb.cmake)
