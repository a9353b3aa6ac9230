// Table: left-aligned text columns for the CLI's human output, and ForTerminal, which every
// piece of server-provided text in that output goes through. Thread-compatible.
#ifndef REBOUND_CLIENT_TABLE_H_
#define REBOUND_CLIENT_TABLE_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace rebound::client {

// `text` with its control characters written as escapes, so that what a server or a job's
// submitter put in a field cannot move the cursor, clear the screen, retitle the window or
// forge an output line: CR, LF and TAB become \r, \n, \t; other C0 controls, DEL and C1
// controls (U+0080..U+009F) become \xNN or \uNNNN. Everything else, UTF-8 included, is kept.
// Human output only: --json prints JSON, whose own escaping already covers these characters.
std::string ForTerminal(absl::string_view text);

class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // A row shorter than the header is padded with empty cells. Cells pass through ForTerminal.
  void AddRow(std::vector<std::string> row);
  size_t size() const { return rows_.size(); }

  // Header and rows, columns two spaces apart; no trailing spaces.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace rebound::client

#endif  // REBOUND_CLIENT_TABLE_H_
