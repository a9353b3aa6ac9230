# The build's identity, reported by `rebound-server --version`, `reboundctl --version` and the
# rebound_build_info{version, revision} metric: the project version and REBOUND_REVISION.
#
# REBOUND_REVISION (cache): the source revision. Set it with -DREBOUND_REVISION=abc1234 when the
# build has no .git (the container image passes its REVISION build argument this way). Left
# empty, it is read from git at configure time (`git rev-parse --short HEAD`), else "unknown".
#
# Defines the header-only target rebound::build_info; its header "rebound/build_info.h" holds
# kVersion and kRevision.
set(REBOUND_REVISION "" CACHE STRING
    "Source revision in --version and rebound_build_info (empty: from git, else unknown)")

if(NOT REBOUND_REVISION STREQUAL "")
  set(rebound_revision "${REBOUND_REVISION}")
else()
  execute_process(COMMAND git rev-parse --short HEAD
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    OUTPUT_VARIABLE rebound_revision OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE rebound_git_result ERROR_QUIET)
  if(NOT rebound_git_result EQUAL 0 OR NOT rebound_revision)
    set(rebound_revision unknown)
  endif()
endif()
# It becomes a C++ string literal and a Prometheus label value: keep it to what a revision or a
# tag looks like.
if(NOT rebound_revision MATCHES "^[A-Za-z0-9][A-Za-z0-9._+-]*$")
  message(FATAL_ERROR "REBOUND_REVISION '${rebound_revision}': expected letters, digits and . _ + -"
                      " (a commit id or a tag)")
endif()
message(STATUS "Rebound ${PROJECT_VERSION}, revision ${rebound_revision}")

set(rebound_build_info_dir ${CMAKE_BINARY_DIR}/gen/build_info)
configure_file(${CMAKE_CURRENT_LIST_DIR}/build_info.h.in
               ${rebound_build_info_dir}/rebound/build_info.h @ONLY)
add_library(rebound_build_info INTERFACE)
add_library(rebound::build_info ALIAS rebound_build_info)
target_include_directories(rebound_build_info INTERFACE ${rebound_build_info_dir})
