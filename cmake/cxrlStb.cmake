# stb's single-file headers (stb_image, stb_image_write with its zlib codec, stb_truetype), used by cxrl/io/stb.hpp
# and cxrl/io/font.hpp. Debian ships them without a CMake package, so cxrl declares the imported target itself;
# included by the build tree and by the installed package config.
if(NOT TARGET cxrl::stb)
  find_path(CXRL_STB_INCLUDE_DIR NAMES stb/stb_image.h stb/stb_image_write.h stb/stb_truetype.h
    DOC "folder holding stb/stb_image.h (Debian: libstb-dev)")
  if(NOT CXRL_STB_INCLUDE_DIR)
    message(FATAL_ERROR "cxrl needs stb's headers (stb/stb_image.h, stb/stb_image_write.h, stb/stb_truetype.h): "
                        "install libstb-dev, or set CXRL_STB_INCLUDE_DIR to the folder that holds stb/")
  endif()
  add_library(cxrl::stb INTERFACE IMPORTED GLOBAL)
  set_target_properties(cxrl::stb PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CXRL_STB_INCLUDE_DIR}")
endif()
