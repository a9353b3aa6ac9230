#include "client/table.h"

#include <algorithm>
#include <utility>

namespace rebound::client {

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> row) {
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
