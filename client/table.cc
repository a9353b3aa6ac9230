#include "client/table.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace rebound::client {

std::string ForTerminal(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto u = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (u == '\n') {
      out += "\\n";
    } else if (u == '\r') {
      out += "\\r";
    } else if (u == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", u);
    } else if (u == 0xc2 && next >= 0x80 && next <= 0x9f) {  // U+0080..U+009F in UTF-8
      absl::StrAppendFormat(&out, "\\u%04x", next);
      ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {
  for (std::string& cell : header_) cell = ForTerminal(cell);
}

void Table::AddRow(std::vector<std::string> row) {
  for (std::string& cell : row) cell = ForTerminal(cell);
  row.resize(std::max(row.size(), header_.size()));
  rows_.push_back(std::move(row));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);

  auto print = [&out, &widths](const std::vector<std::string>& row) {
    // The last non-empty cell ends the line, so no line carries trailing spaces.
    size_t end = row.size();
    while (end > 0 && row[end - 1].empty()) --end;
    for (size_t i = 0; i < end; ++i) {
      out << row[i];
      if (i + 1 < end) out << std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << '\n';
  };
  print(header_);
  for (const auto& row : rows_) print(row);
}

}  // namespace rebound::client
