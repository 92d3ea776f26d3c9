# Helpers shared by every folder's CMakeLists.txt.

# Warnings for our own targets; -Werror when TWOOSTWO_WERROR is on (CI).
function(twoostwo_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                         -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
                         -Wimplicit-fallthrough)
  if(TWOOSTWO_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# twoostwo_library(NAME DIR <folder> [EXCLUDE <regex>...] DEPS <targets...>)
# A static library from every .cpp under <folder> (recursively), minus EXCLUDEd
# paths. Headers are included as "folder/file.h" from the source root, so one
# include root serves every module; the DEPS list is the module boundary of
# DESIGN.md and nothing else may be linked.
function(twoostwo_library name)
  cmake_parse_arguments(ARG "" "DIR" "EXCLUDE;DEPS" ${ARGN})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS "${ARG_DIR}/*.cpp")
  foreach(pattern IN LISTS ARG_EXCLUDE)
    list(FILTER sources EXCLUDE REGEX "${pattern}")
  endforeach()
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC "${PROJECT_SOURCE_DIR}")
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
    twoostwo_warnings(${name})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE "${PROJECT_SOURCE_DIR}")
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
endfunction()
