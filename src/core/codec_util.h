// Helpers shared by the event JSON codec, the CloudEvents codec and event
// validation. Internal to herald. Pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace herald::detail {

// Appends JSON text, turning raw line breaks (which valid JSON holds only
// as whitespace between tokens) into spaces, so the result stays on one line
// for JSON lines and Server-Sent Events.
void AppendOneLine(std::string_view json, std::string* out);

// Whether `name` is a context attribute herald writes itself (specversion,
// id, source, type, subject, time, datacontenttype, dataschema, data,
// data_base64 reduced to database64, position, streamversion).
bool IsCloudEventAttributeName(std::string_view name);

// The CloudEvents extension attribute name of a metadata key: lower-cased
// and reduced to [a-z0-9]; when the result is an attribute name above,
// possibly after leading 'x's, one more 'x' is put in front ("source" ->
// "xsource", "xsource" -> "xxsource"). Empty when nothing is left.
std::string ExtensionNameOfKey(std::string_view key);

// The metadata key of an extension attribute: the name with one leading
// 'x' removed when ExtensionNameOfKey put it there.
std::string_view KeyOfExtensionName(std::string_view name);

}  // namespace herald::detail
