# rebound_set_warnings(target): strict warnings, as errors, for our own code only.
# Linked PRIVATE so third-party headers and generated code are not held to them.
function(rebound_set_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor -Wcast-align
    -Wunused -Woverloaded-virtual -Wimplicit-fallthrough
    -Werror)
endfunction()
