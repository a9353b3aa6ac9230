# REBOUND_SANITIZE=address,undefined (or thread) instruments every target.
set(REBOUND_SANITIZE "" CACHE STRING "Comma-separated sanitizers: address,undefined or thread")
if(REBOUND_SANITIZE)
  add_compile_options(-fsanitize=${REBOUND_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${REBOUND_SANITIZE})
endif()
