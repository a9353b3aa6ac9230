# REBOUND_SANITIZE=address,undefined (or thread) instruments every target. UBSan does not
# recover: its first report aborts the process, so a test that triggers one fails.
set(REBOUND_SANITIZE "" CACHE STRING "Comma-separated sanitizers: address,undefined or thread")
if(REBOUND_SANITIZE)
  add_compile_options(-fsanitize=${REBOUND_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${REBOUND_SANITIZE})
  if(REBOUND_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize-recover=all)
  endif()
endif()
