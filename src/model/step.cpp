#include "model/step.h"

#include <fmt/format.h>

#include "util/error.h"

namespace ds::model {

void StepLayout::check_replays_as(const StepLayout& rec, const char* what) const {
  DS_CHECK(ids.size() == rec.ids.size() && logit_rows.size() == rec.logit_rows.size() &&
               ab.page_tables.size() == rec.ab.page_tables.size() && dp_tokens == rec.dp_tokens,
           "{} of {} tokens / {} logit rows / {} sequences / DP rows [{}], recorded as {} / {} / {} / [{}]", what,
           ids.size(), logit_rows.size(), ab.page_tables.size(), fmt::join(dp_tokens, ","), rec.ids.size(),
           rec.logit_rows.size(), rec.ab.page_tables.size(), fmt::join(rec.dp_tokens, ","));
}

}  // namespace ds::model
