// Small status helpers: Debian's Abseil 20220623 has no RETURN_IF_ERROR.
#ifndef REBOUND_SERVER_COMMON_STATUS_MACROS_H_
#define REBOUND_SERVER_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define REBOUND_STATUS_CONCAT_INNER_(a, b) a##b
#define REBOUND_STATUS_CONCAT_(a, b) REBOUND_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define REBOUND_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    const ::absl::Status _rebound_status = (expr);     \
    if (!_rebound_status.ok()) return _rebound_status; \
  } while (0)

// `lhs = value of expr`, or returns its status from the enclosing function.
#define REBOUND_ASSIGN_OR_RETURN(lhs, expr) \
  REBOUND_ASSIGN_OR_RETURN_IMPL_(REBOUND_STATUS_CONCAT_(_rebound_statusor_, __LINE__), lhs, expr)
#define REBOUND_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = *std::move(statusor)

#endif  // REBOUND_SERVER_COMMON_STATUS_MACROS_H_
