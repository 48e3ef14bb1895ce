// RFC 4180 CSV (quoted fields with commas, doubled quotes and newlines), plus the value rendering
// pandas.read_csv + str() would give, which the MMLU prompts depend on.
#pragma once
#include <string>
#include <vector>

namespace ds::bench {

using CsvTable = std::vector<std::vector<std::string>>;

CsvTable parse_csv(const std::string& text);
CsvTable read_csv_file(const std::string& path);

// Renders each column as pandas would print its values: a column whose every cell is an integer
// stays as written (canonical int); a numeric column with any non-integer or empty cell becomes
// float (so "2" prints "2.0", empty prints "nan"); other columns keep their text, empty -> "nan".
void pandas_render(CsvTable& rows);

}  // namespace ds::bench
